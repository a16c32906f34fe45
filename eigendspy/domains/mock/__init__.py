"""The mock domain: a tiny task tracker with a user-side notification inbox (dual control).

Built in: our own policy and a seeded DB generator. With tau2 data (``data_dir`` pointing at
tau2's ``domains/mock``) it uses tau2's ``db.json``, ``user_db.json``, tasks, splits and policy.
"""

from __future__ import annotations

import random
from pathlib import Path

from eigendspy.core.domain import Domain
from eigendspy.core.policy_rules import RequireBefore
from eigendspy.domains import tau2_data
from eigendspy.domains.mock import tools
from eigendspy.domains.mock.db import MockDB, MockUserDB, Notification, TaskItem, User

HERE = Path(__file__).parent
_FIRST = ["Ada", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana"]
_LAST = ["Ito", "Jones", "Kova", "Lund", "Moreau", "Ng", "Okafor", "Patel"]
_TITLES = ["Quarterly report", "Team offsite", "Budget review", "Hiring plan", "Demo prep", "Onboarding"]


def generate_db(seed: int = 0, num_users: int = 3, tasks_per_user: int = 2) -> MockDB:
    """A seeded mock DB: ``num_users`` users each owning ``tasks_per_user`` tasks."""
    rng = random.Random(seed)
    tasks: dict[str, TaskItem] = {}
    users: dict[str, User] = {}
    for u in range(1, num_users + 1):
        user = User(user_id=f"user_{u}", name=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}")
        for _ in range(tasks_per_user):
            task_id = f"task_{len(tasks) + 1}"
            tasks[task_id] = TaskItem(
                task_id=task_id,
                title=rng.choice(_TITLES),
                description=rng.choice([None, "Due end of month", "High priority"]),
                status=rng.choice(["pending", "completed"]),
            )
            user.tasks.append(task_id)
        users[user.user_id] = user
    return MockDB(tasks=tasks, users=users)


def generate_user_db(seed: int = 0) -> MockUserDB:
    return MockUserDB(
        notifications={
            "notif_1": Notification(
                notification_id="notif_1", message="Task 'task_1' has been assigned to you.", task_id="task_1"
            )
        }
    )


def _alias_user_db(env) -> None:
    """tau2 quirk: in its mock domain, once initialization data is applied the user side's DB
    *is* the agent DB (same object), so both hashes are the agent DB's."""
    env.user_state = env.agent_state


def load_domain(data_dir: str | Path | None = None, seed: int = 0, num_users: int = 3,
                tasks_per_user: int = 2) -> Domain:
    """The mock domain, built in (a seeded DB of ``num_users`` x ``tasks_per_user``) or over tau2's data."""
    directory = tau2_data.resolve_data_dir("mock", data_dir)
    common = dict(
        name="mock",
        db_model=MockDB,
        tools=tools.AGENT_TOOLS,
        functions=tools.AGENT_FUNCTIONS,
        user_db_model=MockUserDB,
        user_tools=tools.USER_TOOLS,
        user_functions=tools.USER_FUNCTIONS,
    )
    if directory is None:
        # tau2's mock policy only says "Only existing users can create tasks" (no lookup order), so
        # the rule belongs to the built-in policy alone; it covers what that sentence is about
        # (a task's owner), not status updates.
        owner_lookup = RequireBefore(first=["get_users"], then=["create_task"], policy=(
            "Only users that already exist in the system may own tasks; look the user up first."))
        return Domain(
            policy=(HERE / "policy.md").read_text(),
            load_db=lambda: generate_db(seed, num_users=num_users, tasks_per_user=tasks_per_user),
            load_user_db=lambda: generate_user_db(seed),
            rules=[owner_lookup],
            **common,
        )
    return Domain(
        policy=tau2_data.find_file(directory, "policy.md").read_text(),
        load_db=lambda: tau2_data.load_model(tau2_data.find_file(directory, "db.json"), MockDB),
        load_user_db=lambda: tau2_data.load_model(tau2_data.find_file(directory, "user_db.json"), MockUserDB),
        load_tasks=lambda: tau2_data.load_task_file(directory, "tasks.json"),
        load_splits=lambda: tau2_data.load_splits(directory),
        data_dir=str(directory),
        tau2_init_data_quirk=_alias_user_db,
        **common,
    )
