"""Demo tasks for the built-in retail domain, derived from its seeded database.

The data engine (LLM roles) is what normally writes tasks; the demo needs tasks with no LM at
all, so it derives a few from the database with fixed templates: cancel a pending order,
return a delivered item. Each has gold actions and a checker (DB + COMMUNICATE), so the whole
runtime — environment, orchestrator, checker, verification, pass^k — runs offline.
"""

from __future__ import annotations

import random

from eigendspy.core.domain import Domain
from eigendspy.core.task import (
    Action,
    Description,
    EvaluationCriteria,
    RewardType,
    StructuredUserInstructions,
    Task,
    UserScenario,
)


def retail_demo_tasks(domain: Domain, n: int = 6, seed: int = 0) -> list[Task]:
    """Up to ``n`` tasks alternating cancellations and returns, grounded in real rows."""
    db = domain.base_db().model
    rng = random.Random(seed)
    orders = sorted(db.orders.values(), key=lambda o: o.order_id)
    pending = [o for o in orders if o.status == "pending"]
    delivered = [o for o in orders if o.status == "delivered" and o.items]
    rng.shuffle(pending)
    rng.shuffle(delivered)
    tasks: list[Task] = []
    while len(tasks) < n and (pending or delivered):
        if pending and (len(tasks) % 2 == 0 or not delivered):
            tasks.append(_cancel_task(db, pending.pop(), len(tasks)))
        elif delivered:
            tasks.append(_return_task(db, delivered.pop(), len(tasks)))
    return tasks


def _scenario(reason: str, known: str, instructions: str) -> UserScenario:
    return UserScenario(instructions=StructuredUserInstructions(
        domain="retail", reason_for_call=reason, known_info=known, unknown_info=None,
        task_instructions=instructions,
    ))


def _cancel_task(db, order, index: int) -> Task:
    user = db.users[order.user_id]
    return Task(
        id=f"demo_cancel_{index}",
        description=Description(purpose="Cancel a pending order (demo template)"),
        user_scenario=_scenario(
            f"You ordered something by mistake and want order {order.order_id} cancelled.",
            f"Your email is {user.email}. The order id is {order.order_id}.",
            "Ask to cancel the order because you ordered it by mistake. Confirm when asked.",
        ),
        evaluation_criteria=EvaluationCriteria(
            actions=[
                Action(action_id="0", name="find_user_id_by_email", arguments={"email": user.email}),
                Action(action_id="1", name="get_order_details", arguments={"order_id": order.order_id}),
                Action(action_id="2", name="cancel_pending_order",
                       arguments={"order_id": order.order_id, "reason": "ordered by mistake"}),
            ],
            communicate_info=["cancelled"],
            reward_basis=[RewardType.DB, RewardType.COMMUNICATE],
        ),
    )


def _return_task(db, order, index: int) -> Task:
    user = db.users[order.user_id]
    item = order.items[0]
    payment = order.payment_history[0].payment_method_id
    refund = f"{item.price:.2f}"
    return Task(
        id=f"demo_return_{index}",
        description=Description(purpose="Return one delivered item to the original payment method (demo)"),
        user_scenario=_scenario(
            f"You want to return the {item.name} from order {order.order_id}.",
            f"Your email is {user.email}. The order id is {order.order_id}.",
            "Return only that item, refunded to the original payment method. Ask how much you get back.",
        ),
        evaluation_criteria=EvaluationCriteria(
            actions=[
                Action(action_id="0", name="find_user_id_by_email", arguments={"email": user.email}),
                Action(action_id="1", name="get_order_details", arguments={"order_id": order.order_id}),
                Action(action_id="2", name="return_delivered_order_items", arguments={
                    "order_id": order.order_id, "item_ids": [item.item_id], "payment_method_id": payment}),
            ],
            communicate_info=[refund],
            reward_basis=[RewardType.DB, RewardType.COMMUNICATE],
        ),
    )
