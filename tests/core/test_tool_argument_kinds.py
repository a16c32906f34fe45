"""Tool arguments of the wrong JSON kind are tool errors, never DB rows (issue 11).

What tau2 accepts stays accepted (see ``ToolSpec.check_arguments``): any string for a literal,
numbers for numbers or strings, ``null`` where the default is None.
"""

from __future__ import annotations

import json
import time

import pytest

from eigendspy.core.environment import Environment
from eigendspy.domains.retail import tools as retail_tools
from tests.core.environment_helpers import assert_error_without_change, call

pytest_plugins = ["tests.core.environment_helpers"]


@pytest.mark.parametrize("status", [True, ["completed"], {"s": "completed"}, None])
def test_wrong_kind_for_a_string_is_a_tool_error_without_a_write(domain, status) -> None:
    env = Environment(domain)
    msg = assert_error_without_change(env, call("update_task_status", {"task_id": "task_1", "status": status}))
    assert "argument 'status'" in msg.content and "expected string" in msg.content


def test_wrong_kind_inside_a_list_names_the_item() -> None:
    spec = next(t for t in retail_tools.AGENT_TOOLS if t.name == "return_delivered_order_items")
    with pytest.raises(TypeError, match="item 1: expected string, got boolean"):
        spec.check_arguments({"order_id": "#W1", "item_ids": ["1", True], "payment_method_id": "x"})


def test_what_tau2_accepts_is_still_accepted(domain) -> None:
    env = Environment(domain)
    msg = env.execute(call("update_task_status", {"task_id": "task_1", "status": "bogus"}))
    assert not msg.error and json.loads(msg.content)["status"] == "bogus"
    msg = env.execute(call("create_task", {"user_id": "user_1", "title": "A", "description": None}))
    assert not msg.error, msg.content


def test_checking_a_long_list_is_linear() -> None:
    spec = next(t for t in retail_tools.AGENT_TOOLS if t.name == "return_delivered_order_items")
    start = time.process_time()
    spec.check_arguments({"order_id": "#W1", "item_ids": ["1"] * 1_000_000, "payment_method_id": "x"})
    with pytest.raises(TypeError, match="item 999999"):
        spec.check_arguments({"order_id": "#W1", "item_ids": ["1"] * 999_999 + [None], "payment_method_id": "x"})
    assert time.process_time() - start < 2.0
