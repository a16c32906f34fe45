"""The retail domain against tau2-bench's own recorded behaviour, plus the seeded generator.

The tau2 parts replay tau2's probe oracle (262 tool calls) and the gold actions of the 74 train
tasks, comparing tool messages byte for byte and DB hashes. A full retail hash costs ~40 ms, so
a step is hashed when it can change state (write tools) or failed; a successful read is checked
by the overlay staying untouched while tau2's hash stayed the same. The pristine DB's hash is
computed once and reused for every untouched state (their dumps are the same object).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from eigendspy.core.environment import Environment
from eigendspy.core.messages import ToolCall
from eigendspy.domains.calculator import CalculationError, evaluate
from eigendspy.domains.retail import generate_db, load_domain
from eigendspy.domains.retail.db import RetailDB

TAU2 = Path(__file__).resolve().parents[3] / "shared" / "tau2"
RETAIL = TAU2 / "retail"
needs_tau2 = pytest.mark.skipif(
    not (RETAIL / "db.json").exists(), reason=f"tau2 retail reference data not found at {RETAIL}"
)
# Messages of Python/pydantic argument validation differ in wording (tau2 prefixes the class name).
PYTHON_ERRORS = ("positional argument", "unexpected keyword argument", "validation error for", "<string>")


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (RETAIL / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tau2_domain():
    return load_domain(RETAIL)


@pytest.fixture(scope="module")
def pristine_hash(tau2_domain) -> str:
    return Environment(tau2_domain).db_hash()


def _hash(env: Environment, pristine: str) -> str:
    return pristine if env.agent_state.is_pristine else env.db_hash()


def _overlay_snapshot(env: Environment) -> dict:
    return {table: dict(rows) for table, rows in env.agent_state.tables.items()}


def _same_overlay(before: dict, after: dict) -> bool:
    """Same tables holding the very same row objects (nothing copied, nothing written)."""
    if before.keys() != after.keys():
        return False
    return all(
        before[t].keys() == after[t].keys() and all(before[t][k] is after[t][k] for k in before[t])
        for t in before
    )


# -- schemas ----------------------------------------------------------------------------------
@needs_tau2
def test_schemas_equal_tau2(tau2_domain):
    reference = json.loads((RETAIL / "tool_schemas.json").read_text())
    assert tau2_domain.tool_schemas() == reference["assistant"]
    assert tau2_domain.toolkit.tool_meta() == reference["tool_meta"]["assistant"]


@pytest.fixture
def builtin(monkeypatch):
    """The built-in domain, even where ``$EIGENDSPY_TAU2_DATA`` points at tau2's data."""
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)
    return load_domain(seed=1)


def test_builtin_domain_has_same_tools(builtin):
    domain = builtin
    assert domain.toolkit.names[0] == "calculate" and len(domain.toolkit) == 16
    assert domain.tasks() == []
    assert "gift card" in domain.policy and len(domain.policy.split()) < 1200


# -- probe oracle -----------------------------------------------------------------------------
@needs_tau2
def test_probe_oracle(tau2_domain, pristine_hash):
    lines = _jsonl("probe_oracle.jsonl")
    steps = hashed = 0
    for seq_id, group in itertools.groupby(lines, key=lambda line: line["seq_id"]):
        header, *calls = list(group)
        assert header["step"] == -1 and header["db_hash_after"] == pristine_hash, seq_id
        env = Environment(tau2_domain)
        previous = pristine_hash
        for line in calls:
            where = f"{seq_id} step {line['step']} {line['name']}"
            before = _overlay_snapshot(env)
            call = ToolCall(name=line["name"], arguments=line["arguments"], requestor=line["requestor"])
            msg = env.execute(call)
            steps += 1
            assert msg.error == line["error"], where
            if not (line["error"] and any(p in line["content"] for p in PYTHON_ERRORS)):
                assert msg.content == line["content"], where
            if line["error"] or tau2_domain.toolkit.mutates_state(line["name"]):
                assert _hash(env, pristine_hash) == line["db_hash_after"], where
                hashed += 1
            else:  # a successful read: nothing may have been copied or written
                assert _same_overlay(before, _overlay_snapshot(env)), where
                assert line["db_hash_after"] == previous, where
            previous = line["db_hash_after"]
    assert steps == 262 and hashed > 150


# -- gold replay of the tasks -----------------------------------------------------------------
@needs_tau2
def test_gold_actions_reproduce_oracle(tau2_domain, pristine_hash):
    records = _jsonl("oracle.jsonl")
    tasks = {task.id: task for task in tau2_domain.tasks()}
    assert len(tasks) == 114 and len(records) == 74
    assert set(tau2_domain.splits()["train"]) == {r["task_id"] for r in records}
    for record in records:
        task = tasks[record["task_id"]]
        env = Environment.for_task(tau2_domain, task)
        assert _hash(env, pristine_hash) == record["initial_db_hash"], task.id
        outputs = record["gold_tool_outputs"]
        assert len(outputs) == len(task.gold_actions), task.id
        for action, expected in zip(task.gold_actions, outputs, strict=True):
            msg = env.make_tool_call(action.name, action.requestor, **action.arguments)
            assert (msg.content, msg.error) == (expected["content"], expected["error"]), (
                task.id,
                action.name,
            )
        assert _hash(env, pristine_hash) == record["gold_db_hash"], task.id


# -- calculator -------------------------------------------------------------------------------
def test_calculator_matches_python_arithmetic():
    """Same values and the same error texts as tau2's ``eval`` (used here as the reference only)."""
    expressions = ["2 + 2", "19.99 * 3", "1 / 3", "7 // 2", "2 ** 3", "-(4 - 6) * 1.5", " 100 - 0.01"]
    expressions += [
        "5 / 0",
        "5.0 / 0",
        "5 // 0",
        "0 ** -1",
        "10.0 ** 400",
        "2 ** 0.5",
        "(1 + 2) * (3 - 4) / 5",
    ]
    for expression in expressions:
        try:
            expected = str(round(float(eval(expression.lstrip())), 2))
        except (ZeroDivisionError, OverflowError) as exc:
            with pytest.raises(CalculationError) as info:
                evaluate(expression)
            assert str(info.value) == str(exc), expression
        else:
            assert str(round(float(evaluate(expression)), 2)) == expected, expression
    with pytest.raises(CalculationError, match="Invalid characters"):
        evaluate("__import__('os')")
    with pytest.raises(CalculationError, match="too large"):
        evaluate("9**9**9")
    with pytest.raises(SyntaxError):
        evaluate("(1")


# -- generator --------------------------------------------------------------------------------
def test_generator_is_deterministic_and_valid():
    a, b = generate_db(seed=7), generate_db(seed=7)
    assert a.model_dump() == b.model_dump()
    assert a.model_dump() != generate_db(seed=8).model_dump()
    RetailDB.model_validate(json.loads(a.model_dump_json()))  # round-trips through JSON
    statuses = {o.status for o in a.orders.values()}
    assert {"pending", "processed", "delivered", "cancelled"} <= statuses
    items = {i for p in a.products.values() for i in p.variants}
    assert len(items) == sum(len(p.variants) for p in a.products.values())  # item ids unique
    assert not items & set(a.products)  # item and product ids never collide
    for order in a.orders.values():
        assert order.order_id.startswith("#W") and len(order.order_id) == 9
        assert order.order_id in a.users[order.user_id].orders
        assert all(
            p.payment_method_id in a.users[order.user_id].payment_methods for p in order.payment_history
        )
        assert bool(order.fulfillments) == (
            order.status not in ("pending", "pending (item modified)", "cancelled")
        )
        total = round(sum(i.price for i in order.items), 2)
        if order.status in ("pending", "processed", "delivered"):
            assert order.payment_history[0].amount == total
    for user in a.users.values():
        first, last, digits = user.user_id.rsplit("_", 2)[0], user.user_id.split("_")[1], user.user_id[-4:]
        assert (
            first == user.name.first_name.lower() and last == user.name.last_name.lower() and digits.isdigit()
        )
        for pm in user.payment_methods.values():
            assert pm.id.startswith(pm.source) and len(pm.id.rsplit("_", 1)[1]) == 7
            if pm.source == "gift_card":
                assert isinstance(pm.balance, float)


def test_tools_work_on_generated_db(builtin):
    env = Environment(builtin)
    db = generate_db(seed=1)
    order = next(o for o in db.orders.values() if o.status == "pending")
    user = db.users[order.user_id]
    found = env.make_tool_call("find_user_id_by_email", email=user.email.upper())
    assert (found.content, found.error) == (user.user_id, False)
    by_zip = env.make_tool_call(
        "find_user_id_by_name_zip",
        first_name=user.name.first_name,
        last_name=user.name.last_name,
        zip=user.address.zip,
    )
    assert not by_zip.error
    details = env.make_tool_call("get_order_details", order_id=order.order_id)
    assert json.loads(details.content)["status"] == "pending"
    assert env.agent_state.is_pristine
    cancelled = env.make_tool_call(
        "cancel_pending_order", order_id=order.order_id, reason="ordered by mistake"
    )
    assert not cancelled.error, cancelled.content
    after = json.loads(cancelled.content)
    assert after["status"] == "cancelled" and after["payment_history"][-1]["transaction_type"] == "refund"
    again = env.make_tool_call("cancel_pending_order", order_id=order.order_id, reason="ordered by mistake")
    assert (again.content, again.error) == ("Error: Non-pending order cannot be cancelled", True)
    products = json.loads(env.make_tool_call("list_all_product_types").content)
    assert list(products) == sorted(products) and len(products) == 20


def test_write_tools_on_generated_db(builtin):
    """Returns, exchanges and item changes go through on generated orders, as on tau2's."""
    db = generate_db(seed=1)
    env = Environment(builtin)
    delivered = [o for o in db.orders.values() if o.status == "delivered"]
    first, second = delivered[0], delivered[1]
    original = first.payment_history[0].payment_method_id
    ret = env.make_tool_call(
        "return_delivered_order_items",
        order_id=first.order_id,
        item_ids=[first.items[0].item_id],
        payment_method_id=original,
    )
    assert not ret.error and json.loads(ret.content)["status"] == "return requested", ret.content
    item = second.items[0]
    swap = next(
        v for v in db.products[item.product_id].variants.values() if v.available and v.item_id != item.item_id
    )
    exchange = env.make_tool_call(
        "exchange_delivered_order_items",
        order_id=second.order_id,
        item_ids=[item.item_id],
        new_item_ids=[swap.item_id],
        payment_method_id=second.payment_history[0].payment_method_id,
    )
    body = json.loads(exchange.content) if not exchange.error else {}
    assert body.get("exchange_price_difference") == round(swap.price - item.price, 2), exchange.content
    before = env.db_hash()
    failed = env.make_tool_call("get_order_details", order_id="#W0000000")
    assert failed.error and env.db_hash() == before
