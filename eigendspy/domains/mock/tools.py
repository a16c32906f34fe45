"""Mock domain tools, tool-for-tool compatible with tau2-bench's mock domain.

Quirks kept on purpose (they are part of the benchmark's behaviour): new task ids are
``task_{len(tasks)+1}``, and ``update_task_status`` stores whatever status string it is given.
"""

from __future__ import annotations

from typing import Literal

from eigendspy.core.domain import ToolError, assertion, env_function, tool
from eigendspy.domains.common import transfer_to_human_agents
from eigendspy.domains.mock.db import MockDB, MockUserDB, Notification, TaskItem, User


@tool(kind="write")
def create_task(db: MockDB, user_id: str, title: str, description: str = None) -> TaskItem:  # type: ignore[assignment]
    """Create a new task for a user.

    Args:
        user_id: The ID of the user creating the task
        title: The title of the task
        description: Optional description of the task

    Returns:
        The created task
    """
    if user_id not in db.users:
        raise ToolError(f"User {user_id} not found")
    task_id = f"task_{len(db.tasks) + 1}"
    task = TaskItem(task_id=task_id, title=title, description=description)
    db.tasks[task_id] = task
    db.users[user_id].tasks.append(task_id)
    return task


@tool(kind="read")
def get_users(db: MockDB) -> list[User]:
    """Get all users in the database."""
    return list(db.users.values())


@tool(kind="write")
def update_task_status(db: MockDB, task_id: str, status: Literal["pending", "completed"]) -> TaskItem:
    """Update the status of a task.

    Args:
        task_id: The ID of the task to update
        status: The new status of the task

    Returns:
        The updated task
    """
    if task_id not in db.tasks:
        raise ToolError(f"Task {task_id} not found")
    task = db.tasks[task_id]
    task.status = status
    return task


@assertion
def assert_task_status(db: MockDB, task_id: str, expected_status: str) -> bool:
    """Whether a task has the expected status (raises if the task does not exist, as tau2 does)."""
    if task_id not in db.tasks:
        raise ValueError(f"Task {task_id} not found")
    return db.tasks[task_id].status == expected_status


@tool(kind="read")
def check_notifications(db: MockUserDB) -> list[Notification]:
    """Check all notifications in the user's inbox."""
    return list(db.notifications.values())


@tool(kind="write")
def dismiss_notification(db: MockUserDB, notification_id: str) -> str:
    """Dismiss (mark as read) a notification.

    Args:
        notification_id: The ID of the notification to dismiss.
    """
    if notification_id not in db.notifications:
        raise ToolError(f"Notification {notification_id} not found")
    db.notifications[notification_id].status = "read"
    return f"Notification {notification_id} dismissed"


@env_function
def add_notification(db: MockUserDB, notification_id: str, message: str, task_id: str | None = None) -> None:
    """Put a notification into the user's inbox (task initialization)."""
    db.notifications[notification_id] = Notification(
        notification_id=notification_id, message=message, task_id=task_id
    )


@assertion
def assert_notification_status(db: MockUserDB, notification_id: str, expected_status: str) -> bool:
    """Whether a notification has the expected status."""
    if notification_id not in db.notifications:
        raise ValueError(f"Notification {notification_id} not found")
    return db.notifications[notification_id].status == expected_status


AGENT_TOOLS = [create_task, get_users, update_task_status, transfer_to_human_agents]
AGENT_FUNCTIONS = [assert_task_status]
USER_TOOLS = [check_notifications, dismiss_notification]
USER_FUNCTIONS = [add_notification, assert_notification_status]
