"""Retail item-list tools cost linear work in the list's length and refuse non-lists (issue 11)."""

from __future__ import annotations

import re
import time

import pytest

from eigendspy.core.environment import Environment
from eigendspy.domains.retail import generate_db, load_domain

LONG = [str(1_000_000_000 + i) for i in range(60_000)]  # distinct ids: list.count per element is minutes


@pytest.fixture(scope="module")
def env_and_orders() -> tuple[Environment, dict[str, str]]:
    db = generate_db(seed=1)
    orders = {}
    for status in ("delivered", "pending"):
        order = next(o for o in db.orders.values() if o.status == status)
        orders[status] = order.order_id
        orders[f"{status}_payment"] = order.payment_history[0].payment_method_id
    return Environment(load_domain(seed=1)), orders


CASES = [
    ("return_delivered_order_items", "delivered", ("item_ids",)),
    ("exchange_delivered_order_items", "delivered", ("item_ids", "new_item_ids")),
    ("modify_pending_order_items", "pending", ("item_ids", "new_item_ids")),
]


@pytest.mark.parametrize(("name", "status", "lists"), CASES)
def test_long_item_list_is_refused_in_linear_time(env_and_orders, name, status, lists) -> None:
    env, orders = env_and_orders
    before = env.db_hash()
    start = time.process_time()
    args = {key: LONG for key in lists}
    msg = env.make_tool_call(name, order_id=orders[status], payment_method_id=orders[f"{status}_payment"], **args)
    assert msg.error and "not found" in msg.content, msg.content
    assert time.process_time() - start < 2.0
    assert env.db_hash() == before


@pytest.mark.parametrize(("name", "status", "lists"), CASES)
@pytest.mark.parametrize("bad", ["1234567890" * 1000, 5, [1, 2], None])
def test_non_list_item_ids_are_a_tool_error(env_and_orders, name, status, lists, bad) -> None:
    env, orders = env_and_orders
    before = env.db_hash()
    args = {key: bad for key in lists}
    msg = env.make_tool_call(name, order_id=orders[status], payment_method_id=orders[f"{status}_payment"], **args)
    # the environment's kind check or the tool's own list check, whichever sees it first
    assert msg.error and re.search("must be a list of item id strings|expected array", msg.content), msg.content
    assert env.db_hash() == before
