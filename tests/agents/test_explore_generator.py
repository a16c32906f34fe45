"""The exploring task generator (`TaskGenerator(explore=True)`): a stock dspy.ReAct agent over retail's read tools.

Scripted LMs only. The exploring policy below follows references the way a model would: it reads the
ids out of the previous observations (never out of this file), so a chained lookup's arguments come
from the lookup before it, and the task it writes is grounded in what it looked up.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter

import dspy
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from eigendspy.agents import DraftError, TaskGenerator, TaskValidator
from eigendspy.agents.explore_generator import read_tool_specs
from eigendspy.cli.app import app
from eigendspy.core.environment import Environment
from eigendspy.core.state import tau2_hash
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.entities import render_row, sample_entities
from eigendspy.engine.items import apply_modes
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.scoring.execution import execution_check
from eigendspy.testing.lm import scripted_lm
from eigendspy.testing.roles import scripted_roles

OBSERVATION = re.compile(r"\[\[ ## observation_\d+ ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", re.S)
CHAIN = ("get_user_details", "get_order_details", "get_product_details")


@pytest.fixture(scope="module")
def retail():
    return get_domain("retail")


def db_hash(domain) -> str:
    return tau2_hash(domain.base_db().dump())  # recomputed each time (Domain.db_hash is cached)


def seen(req) -> dict[str, dict]:
    """The latest user, order and product the trajectory shows (parsed from the observations)."""
    found: dict[str, dict] = {}
    for text in OBSERVATION.findall(req.inputs.get("trajectory", "")):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            kind = "user" if "payment_methods" in value else "order" if "items" in value else (
                "product" if "variants" in value else None)
            if kind:
                found[kind] = value
                found.setdefault(f"{kind}s", []).append(value)
    return found


def step(name: str, **args) -> dict:
    return {"next_thought": f"call {name}", "next_tool_name": name, "next_tool_args": args}


def draft(actions: list[tuple[str, dict]], why: str) -> dict:
    return {"reasoning": "grounded in the lookups", "task": {
        "persona": "A customer who likes short answers.", "reason_for_call": f"You want to {why}.",
        "known_info": "Your email and the order id.", "task_instructions": "Confirm with yes when asked.",
        "actions": [{"name": n, "arguments": a} for n, a in actions]}}


def explorer_policy(go_order: float = 0.85, go_product: float = 0.6):
    """A seeded model (seed: the plan text) that walks user -> order (a second one if the first is neither
    pending nor delivered) -> product, then writes a task from what it saw: an item swap, a cancellation,
    a return or an address change."""

    def policy(req):
        rng = random.Random(req.inputs["plan"])
        deeper_order, deeper_product = rng.random() < go_order, rng.random() < go_product
        s = seen(req)
        if "next_tool_name" in req.output_fields:
            if "user" not in s:
                users = sorted(set(re.findall(r'"user_id":"([^"]+)"', req.inputs["entities"])))
                return step("get_user_details", user_id=rng.choice(users))
            if "order" not in s and deeper_order:
                return step("get_order_details", order_id=rng.choice(s["user"]["orders"]))
            actionable = "order" in s and s["order"]["status"] in ("pending", "delivered")
            others = [o for o in s["user"]["orders"] if o not in {x["order_id"] for x in s.get("orders", [])}]
            if "order" in s and not actionable and len(s["orders"]) < 2 and others:
                return step("get_order_details", order_id=rng.choice(others))
            if "order" in s and "product" not in s and deeper_product and s["order"]["status"] in (
                    "pending", "delivered"):
                return step("get_product_details", product_id=rng.choice(s["order"]["items"])["product_id"])
            return step("finish")
        return write_task(s)

    return policy


def write_task(s: dict[str, dict]) -> dict:
    user, order, product = s["user"], s.get("order"), s.get("product")
    reads = [("find_user_id_by_email", {"email": user["email"]}), ("get_user_details", {"user_id": user["user_id"]})]
    for looked in s.get("orders", []):
        reads.append(("get_order_details", {"order_id": looked["order_id"]}))
    if product:
        reads.append(("get_product_details", {"product_id": product["product_id"]}))
    card = next((k for k, m in user["payment_methods"].items() if m["source"] != "gift_card"), None)
    if order and order["status"] == "pending" and product and card:
        item = next(i for i in order["items"] if i["product_id"] == product["product_id"])
        new = next((v["item_id"] for v in product["variants"].values()
                    if v["available"] and v["item_id"] != item["item_id"]), None)
        if new:
            return draft([*reads, ("modify_pending_order_items", {
                "order_id": order["order_id"], "item_ids": [item["item_id"]], "new_item_ids": [new],
                "payment_method_id": card})], "swap an item of your pending order for another option")
    if order and order["status"] == "pending":
        return draft([*reads, ("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})],
                     "cancel your pending order")
    if order and order["status"] == "delivered":
        item = order["items"][0]
        return draft([*reads, ("return_delivered_order_items", {
            "order_id": order["order_id"], "item_ids": [item["item_id"]],
            "payment_method_id": order["payment_history"][0]["payment_method_id"]})], "return an item")
    return draft([*reads, ("modify_user_address", {
        "user_id": user["user_id"], "address1": "1 New Street", "address2": "Unit 2", "city": "Austin",
        "state": "TX", "country": "USA", "zip": "78701"})], "move your default address")


def sampled_policy(req) -> dict:
    """The same kind of model in sampled mode: it may only use ids the sampled rows show."""
    rng = random.Random(req.inputs["plan"])
    options = []
    for line in req.inputs["entities"].splitlines():
        user = re.search(r'"user_id":"([^"]+)","email":"([^"]+)"', line)
        order = re.search(r'"order_id":"([^"]+)","user_id":"[^"]+","status":"pending"', line)
        if user:
            options.append([("find_user_id_by_email", {"email": user[2]}), ("modify_user_address", {
                "user_id": user[1], "address1": "1 New Street", "address2": "Unit 2", "city": "Austin",
                "state": "TX", "country": "USA", "zip": "78701"})])
        if order:
            options.append([("get_order_details", {"order_id": order[1]}),
                            ("cancel_pending_order", {"order_id": order[1], "reason": "no longer needed"})])
    return {"task": draft(rng.choice(options), "change something")["task"]}


def swappable_user(domain) -> dict:
    """A user with a pending order and a card (the chained item swap needs both), as JSON."""
    db = domain.base_db().model
    for user in db.users.values():
        has_card = any(m.source != "gift_card" for m in user.payment_methods.values())
        if has_card and any(db.orders[o].status == "pending" for o in user.orders):
            return user.model_dump(mode="json")
    raise AssertionError("the seeded retail DB has no user with a pending order")


def test_react_generator_chains_lookups_into_a_task_that_passes_execution_validation(retail):
    user = swappable_user(retail)
    entities = "users (1 of 40):\n" + render_row(user, 600)
    pending = [o for o in user["orders"] if retail.base_db().model.orders[o].status == "pending"]
    policy = explorer_policy(go_order=1.0, go_product=1.0)
    plan = next(f"plan {i}" for i in range(200) if _swaps(retail, f"plan {i}", user))  # a seed whose walk swaps
    before = db_hash(retail)
    lm = scripted_lm(policy)
    pred = TaskGenerator(lm=lm, explore=True)(domain=retail, plan=plan, entities=entities, task_id="x")

    exploration = pred.exploration
    assert exploration.read_path == CHAIN and exploration.stop == "finish" and exploration.steps == 4
    assert all(lookup.ok for lookup in exploration.lookups)
    # each lookup's argument is an id the previous lookup returned (recomputed here from a fresh env)
    env = Environment.for_task(retail)
    user_out = json.loads(env.make_tool_call("get_user_details", user_id=user["user_id"]).content)
    order_id = exploration.lookups[1].arguments["order_id"]
    assert order_id in user_out["orders"] and order_id in pending
    order_out = json.loads(env.make_tool_call("get_order_details", order_id=order_id).content)
    product_id = exploration.lookups[2].arguments["product_id"]
    assert product_id in {item["product_id"] for item in order_out["items"]}
    product_out = json.loads(env.make_tool_call("get_product_details", product_id=product_id).content)
    # the gold write names entities only the lookups revealed (the sampled row shows none of them)
    write = pred.task.gold_actions[-1]
    assert write.name == "modify_pending_order_items" and write.arguments["order_id"] == order_id
    assert write.arguments["new_item_ids"][0] in {v["item_id"] for v in product_out["variants"].values()}
    assert write.arguments["item_ids"][0] in {item["item_id"] for item in order_out["items"]}
    assert write.arguments["new_item_ids"][0] not in entities and product_id not in entities
    # the same validation the engine applies (execution; the judge is a separate LM call), strict
    verdict = TaskValidator(use_judge=False, strict=True)(domain=retail, task=pred.task).verdict
    assert verdict.passed, verdict.reasons
    assert execution_check(retail, pred.task, reject_null_pass=True).passed
    # recorded with the task; the shared DB never changed
    assert [lk["tool"] for lk in pred.task.annotations["explore"]["lookups"]] == list(CHAIN)
    assert db_hash(retail) == before
    # the ReAct step saw only read tools; the extract step got the typed task output
    react_calls = [r for r in lm.log.requests if "next_tool_name" in r.output_fields]
    assert len(react_calls) == 4 and "task" in lm.log.requests[-1].output_fields
    assert "cancel_pending_order" not in react_calls[0].messages[0]["content"].split("(1)")[1]


def _swaps(domain, plan: str, user: dict) -> bool:
    """Whether the walk the explorer policy takes for ``plan`` reaches a pending order's swappable item."""
    db = domain.base_db().model
    rng = random.Random(plan)
    rng.random(), rng.random()
    order = db.orders[rng.choice(user["orders"])]
    if order.status != "pending":
        return False
    rng = random.Random(plan)
    rng.random(), rng.random()
    item = rng.choice(order.items)
    variants = db.products[item.product_id].variants.values()
    return any(v.available and v.item_id != item.item_id for v in variants)


def test_an_agent_that_never_finishes_stops_at_the_step_bound(retail):
    entities = sample_entities(retail, random.Random(0))
    user_id = re.findall(r'"user_id":"([^"]+)"', entities)[0]

    def never_finishes(req):
        if "next_tool_name" in req.output_fields:
            return step("get_user_details", user_id=user_id)
        return write_task(seen(req))

    lm = scripted_lm(never_finishes)
    pred = TaskGenerator(lm=lm, explore=True, max_explore_steps=3)(
        domain=retail, plan="p", entities=entities, task_id="b")
    assert pred.exploration.stop == "max_steps" and pred.exploration.steps == 3
    assert pred.exploration.read_path == ("get_user_details",) * 3
    assert lm.call_count == 4  # three steps, then the extract
    assert pred.task.gold_actions[-1].name == "modify_user_address"

    stubborn = scripted_lm(lambda req: step("get_user_details", user_id=user_id))  # not even a task at the end
    with pytest.raises(Exception, match="(?i)parse|task"):
        TaskGenerator(lm=stubborn, explore=True, max_explore_steps=2)(
            domain=retail, plan="p", entities=entities, task_id="b")
    assert stubborn.call_count <= 2 + 2  # the bound, the extract and at most its adapter fallback


def test_exploring_never_writes_and_errors_become_observations(retail):
    before = db_hash(retail)
    order = next(o for o, row in retail.base_db().model.orders.items() if row.status == "pending")
    cancel = step("cancel_pending_order", order_id=order, reason="no longer needed")

    def policy(script):
        def answer(req):
            if "next_tool_name" in req.output_fields:
                return script[req.inputs.get("trajectory", "").count("[[ ## observation_")]
            return draft([("cancel_pending_order", {"order_id": order, "reason": "no longer needed"})], "cancel")
        return answer

    lm = scripted_lm(policy([step("get_order_details", order_id="#W0000000"), step("get_user_details"),
                             step("get_order_details", order_id=order), step("finish")]))
    pred = TaskGenerator(lm=lm, explore=True, observation_chars=40)(domain=retail, plan="p", entities="", task_id="w")
    unknown, missing_arg, found = pred.exploration.lookups
    assert not unknown.ok and not missing_arg.ok and found.ok  # a domain error and a bad call: observations
    observations = OBSERVATION.findall(lm.log.requests[-1].inputs["trajectory"])
    assert "not found" in observations[0].lower() and len(observations[2]) <= 40 and observations[2].endswith("…")
    # a write tool is no valid step (ReAct's step type lists read tools only): the call fails, nothing is written
    with pytest.raises(Exception, match="next_tool_name"):
        TaskGenerator(lm=scripted_lm(policy([cancel])), explore=True)(domain=retail, plan="p", entities="",
                                                                      task_id="w")
    assert db_hash(retail) == before
    assert retail.base_db().model.orders[order].status == "pending"
    assert "cancel_pending_order" not in {spec.name for _, spec in read_tool_specs(retail)}


def test_concurrent_generations_keep_their_own_walks_and_share_the_predictors(retail):
    entities = sample_entities(retail, random.Random(3), k=6, max_chars=3000)
    gen = TaskGenerator(lm=scripted_lm(explorer_policy(go_order=1.0, go_product=0.0)), explore=True)

    async def both():
        return await asyncio.gather(*(gen.acall(domain=retail, plan=f"plan {i}", entities=entities, task_id=f"c{i}")
                                      for i in range(4)))

    preds = asyncio.run(both())
    # one persistent ReAct (its predictors are the generator's, for optimizers and save/load) whose own tools
    # are never bound to a database: each call ran on a bound copy
    names = [name for name, _ in gen.named_predictors()]
    assert names == ["generate", "explorer.react", "explorer.extract.predict"]
    assert "not bound" in gen.explorer.tools["get_user_details"](user_id="x")
    assert len({pred.task.gold_actions[-1].arguments.get("order_id") for pred in preds}) > 1
    for pred in preds:  # each walk stayed inside its own user's orders
        user, *orders = (lk.arguments for lk in pred.exploration.lookups)
        assert pred.exploration.read_path[0] == "get_user_details" and orders
        assert {retail.base_db().model.orders[o["order_id"]].user_id for o in orders} == {user["user_id"]}


def test_a_bad_draft_says_how_exploring_went(retail):
    def policy(req):
        if "next_tool_name" in req.output_fields:
            return step("finish") if "observation_0" in req.inputs.get("trajectory", "") else step(
                "list_all_product_types")
        return draft([("refund_everything", {})], "get money")

    with pytest.raises(DraftError) as info:
        TaskGenerator(lm=scripted_lm(policy), explore=True)(domain=retail, plan="p", entities="", task_id="d")
    assert "unknown tool 'refund_everything'" in info.value.reasons[0]
    assert info.value.reasons[-1] == "(exploration: list_all_product_types; ended by finish after 2 step(s))"


def test_engine_knob_and_cli_flag():
    roles = Roles.from_lms({})
    apply_modes(roles, EngineConfig(generator_mode="explore", explore_steps=4))
    assert roles.generator.explore and roles.generator.max_explore_steps == 4
    plain = Roles.from_lms({})
    apply_modes(plain, EngineConfig())
    assert not plain.generator.explore
    with pytest.raises(ValidationError, match="small_model"):
        EngineConfig(generator_mode="explore", small_model=True)
    out = CliRunner().invoke(app, ["synth", "--generator", "wander"])
    assert out.exit_code != 0 and "explore" in out.output


def test_explore_mode_uses_more_distinct_read_paths_than_sampled_rows(retail):
    """N scripted generations per mode, same seeds: read paths (the read tools of the gold solution, in order)."""
    n = 24
    stats = {}
    for mode, policy in (("sampled", sampled_policy), ("explore", explorer_policy())):
        gen = TaskGenerator(lm=scripted_lm(policy), explore=mode == "explore")
        paths, lookup_paths, writes, valid, reads = Counter(), Counter(), Counter(), 0, 0
        for i in range(n):
            entities = sample_entities(retail, random.Random(i))
            pred = gen(domain=retail, plan=f"plan {i}", entities=entities, task_id=f"{mode}{i}")
            actions = pred.task.gold_actions
            path = tuple(a.name for a in actions if not retail.mutates_state(a.name))
            paths[path] += 1
            reads += len(path)
            writes[actions[-1].name] += 1
            lookup_paths[pred.exploration.read_path if mode == "explore" else ()] += 1
            valid += execution_check(retail, pred.task, reject_null_pass=True).passed
        stats[mode] = {"read_paths": len(paths), "lookup_paths": len(lookup_paths), "write_tools": len(writes),
                       "valid": valid, "mean_gold_reads": round(reads / n, 2)}
    print(f"\nread-path diversity over {n} scripted generations (retail)")
    print(f"{'':26}{'sampled':>9}{'explore':>9}")
    for key in ("read_paths", "lookup_paths", "write_tools", "valid", "mean_gold_reads"):
        print(f"{key:26}{stats['sampled'][key]:>9}{stats['explore'][key]:>9}")
    assert stats["explore"]["read_paths"] > stats["sampled"]["read_paths"]
    assert stats["explore"]["write_tools"] > stats["sampled"]["write_tools"]
    assert stats["explore"]["valid"] >= stats["sampled"]["valid"]


def test_the_engine_runs_the_exploring_generator_and_stores_its_lookups(tmp_path, retail):
    config = EngineConfig(domain="retail", streams=2, rounds=1, tasks_per_round=2, episodes_per_task=1,
                          generator_mode="explore", explore_steps=5, llm_judges=False)
    store = RunStore.create(tmp_path / "run", RunManifest(config=config, seed=0, domain="retail"))
    try:
        result = asyncio.run(DataEngine(retail, scripted_roles(generator=explorer_policy()), store, config).run())
    finally:
        store.close()
    records = list(RunStore.open(result.run_dir, read_only=True).iter_records("task"))
    accepted = [r for r in records if r.accepted]
    assert len(records) == 4 and accepted
    for record in accepted:
        explore = record.task.annotations["explore"]
        assert explore["max_steps"] == 5 and explore["lookups"][0]["tool"] == "get_user_details"
        reads = [a.name for a in record.task.gold_actions if not retail.mutates_state(a.name)]
        assert reads[1:] == [lk["tool"] for lk in explore["lookups"]]  # the gold solution replays the walk


def test_a_saved_explorer_is_loaded_into_the_explorer_built_later(tmp_path, retail):
    def policy(req):
        if "next_tool_name" in req.output_fields:
            return step("finish")
        return draft([("modify_user_address", {"user_id": "nobody"})], "move")

    with dspy.context(lm=scripted_lm(policy)):
        gen = TaskGenerator(explore=True)
        gen(domain=retail, plan="p", entities="", task_id="s")
        gen.explorer.react.signature = gen.explorer.react.signature.with_instructions("evolved explorer text")
        gen.save(str(tmp_path / "generator.json"))
        fresh = TaskGenerator(explore=True)
        fresh.load(str(tmp_path / "generator.json"))
        assert fresh.explorer is None  # nothing to load into until a domain is known
        fresh(domain=retail, plan="p", entities="", task_id="s")
    assert fresh.explorer.react.signature.instructions == "evolved explorer text"
