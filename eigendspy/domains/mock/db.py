"""Mock domain data model: users who own tasks, and a user-side notification inbox."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TaskItem(BaseModel):
    task_id: str = Field(description="Unique identifier of the task")
    title: str = Field(description="Title of the task")
    description: str | None = Field(None, description="Optional longer description")
    status: Literal["pending", "completed"] = Field("pending", description="Task status")


class User(BaseModel):
    user_id: str
    name: str
    tasks: list[str] = Field(default_factory=list)


class MockDB(BaseModel):
    """Agent side: tasks and users, keyed by id."""

    tasks: dict[str, TaskItem]
    users: dict[str, User]


class Notification(BaseModel):
    notification_id: str
    message: str
    status: Literal["unread", "read"] = "unread"
    task_id: str | None = None


class MockUserDB(BaseModel):
    """User side (dual control): the user's own notification inbox."""

    notifications: dict[str, Notification] = Field(default_factory=dict)
