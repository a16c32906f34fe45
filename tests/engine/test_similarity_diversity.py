"""Diversity that holds: reworded plans and tasks are caught by text similarity, and coverage is reported per round.

The reworded pairs are written by hand the way an LM rewords when asked for "another" plan or task: same
intent, same entities, different wording and order, a read added or an argument spelled differently.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from eigendspy.agents import MetaPlanner, Reflector
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.diversity import diversity_report, tool_ngrams
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.filters import DuplicateFilter
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing import roles as sr
from eigendspy.testing.lm import scripted_lm


def synthesis(intent: str, tools: str, complexity: str = "multi_step", edge: str = "none") -> dict:
    return {"intent_family": intent, "complexity": complexity, "tool_pattern": tools, "user_style": "polite",
            "edge_case": edge}


def draft(intent: str, tools: str, **kw) -> dict:
    return {"synthesis": synthesis(intent, tools, **kw), "evaluation": {"rubric": "acts after identification"}}


# (original, reworded) plans: same intent and cell in all but wording
REWORDED_PLANS = [
    (draft("cancel a pending order", "find_user_id_by_email -> get_order_details -> cancel_pending_order"),
     draft("Cancel an order that is still pending",
           "look up the user by email, get the order details, then cancel_pending_order")),
    (draft("return delivered items for a refund", "find user -> get order details -> return_delivered_order_items"),
     draft("Refund: return items from a delivered order",
           "find_user_id_by_name_zip -> get_order_details -> return_delivered_order_items")),
    (draft("change the shipping address of a pending order",
           "find user -> get order details -> modify_pending_order_address"),
     draft("Update the delivery address on a pending order",
           "authenticate user, fetch the order, modify_pending_order_address")),
]
DIFFERENT_PLAN = draft("exchange an item for a different size",
                       "find user -> order details -> product details -> exchange_delivered_order_items")


def test_meta_planner_drops_reworded_duplicate_plans_and_keeps_a_different_one():
    answer = {"plans": [a for a, _ in REWORDED_PLANS] + [b for _, b in REWORDED_PLANS] + [DIFFERENT_PLAN]}
    pred = MetaPlanner(lm=scripted_lm(lambda req: answer))(domain=get_domain("retail"), n=7)
    kept = [p.synthesis.intent_family for p in pred.plans]
    assert kept == ["cancel a pending order", "return delivered items for a refund",
                    "change the shipping address of a pending order", "exchange an item for a different size"]
    assert [d.synthesis.intent_family for d in pred.dropped] == [b["synthesis"]["intent_family"]
                                                                 for _, b in REWORDED_PLANS]
    # the old rule (equal cells only) would have kept every reworded draft
    loose = MetaPlanner(lm=scripted_lm(lambda req: answer), overlap_threshold=1.0)(domain=get_domain("retail"), n=7)
    assert len(loose.plans) == 7


def test_meta_planner_drops_a_rewording_of_a_previous_round_plan():
    original, reworded = REWORDED_PLANS[0]
    previous = PlanPair(plan_id="p0_0", synthesis=SynthesisPlan(**original["synthesis"]),
                        evaluation=EvaluationPlan(rubric="r"))
    answer = {"plans": [reworded, DIFFERENT_PLAN]}
    pred = MetaPlanner(lm=scripted_lm(lambda req: answer))(domain=get_domain("retail"), n=2, previous=[previous],
                                                           round=1)
    assert [p.synthesis.intent_family for p in pred.plans] == ["exchange an item for a different size"]


def test_reflector_reports_overlap_with_a_reworded_plan_of_another_stream():
    original, reworded = REWORDED_PLANS[1]
    parent = PlanPair(plan_id="p0_0", synthesis=SynthesisPlan(**DIFFERENT_PLAN["synthesis"]),
                      evaluation=EvaluationPlan(rubric="r"))
    other = PlanPair(plan_id="p0_1", synthesis=SynthesisPlan(**original["synthesis"]),
                     evaluation=EvaluationPlan(rubric="r"))
    unrelated = PlanPair(plan_id="p0_2", synthesis=SynthesisPlan(**REWORDED_PLANS[0][0]["synthesis"]),
                         evaluation=EvaluationPlan(rubric="r"))
    lm = scripted_lm(lambda req: {"revised": reworded, "rationale": "x"})
    pred = Reflector(lm=lm)(plan=parent, failures=["too hard"], others=[parent, other, unrelated])
    assert pred.plan.synthesis.cell != other.synthesis.cell  # equality alone would have missed it
    assert pred.overlaps == ["p0_1"]


def make_task(task_id: str, persona: str, reason: str, known: str, instructions: str, actions: list,
              domain: str = "retail") -> Task:
    return Task.model_validate({
        "id": task_id,
        "user_scenario": {"persona": persona, "instructions": {
            "domain": domain, "reason_for_call": reason, "known_info": known, "task_instructions": instructions}},
        "evaluation_criteria": {"actions": [{"action_id": f"{task_id}_{i}", "name": name, "arguments": args}
                                            for i, (name, args) in enumerate(actions)]},
    })


EMAIL, ORDER = "mia.garcia@example.com", "#W2611340"
ADDRESS = {"address1": "12 Elm Street", "address2": "Apt 4", "city": "Austin", "state": "TX", "country": "USA",
           "zip": "78701"}
NAME_ZIP = {"first_name": "Yusuf", "last_name": "Rossi", "zip": "19122"}


def cancel(task_id: str, order: str = ORDER, email: str = EMAIL) -> Task:
    return make_task(task_id, "a customer", f"You want to cancel order {order}; you no longer need it.",
                     f"Your email is {email}. The order id is {order}.",
                     f"Ask to cancel {order} because it is no longer needed; confirm with yes.",
                     [("find_user_id_by_email", {"email": email}), ("get_order_details", {"order_id": order}),
                      ("cancel_pending_order", {"order_id": order, "reason": "no longer needed"})])


# (original, reworded): the reworded gold actions differ (a read dropped or added, an argument spelled
# differently), so the exact check (same gold actions) passes them all
REWORDED_TASKS = [
    (cancel("a1"), make_task(
        "b1", "a customer", f"You no longer need order {ORDER} and want to cancel it.",
        f"The order id is {ORDER}. Your email is {EMAIL}.",
        f"Confirm with yes when asked. Ask to cancel {ORDER} because it is no longer needed.",
        [("find_user_id_by_email", {"email": EMAIL}),
         ("cancel_pending_order", {"order_id": ORDER, "reason": "no longer needed"})])),
    (make_task(
        "a2", "Yusuf Rossi, polite",
        "You moved and want the shipping address of your pending order #W4817420 changed to 12 Elm Street, Apt 4, "
        "Austin TX 78701.", "Your name is Yusuf Rossi and your zip code is 19122. The order id is #W4817420.",
        "Give the new address when asked and confirm with yes.",
        [("find_user_id_by_name_zip", NAME_ZIP), ("get_order_details", {"order_id": "#W4817420"}),
         ("modify_pending_order_address", {"order_id": "#W4817420", **ADDRESS})]),
     make_task(
        "b2", "Yusuf Rossi, polite",
        "You have moved: change the shipping address of pending order #W4817420 to 12 Elm Street, Apt 4, "
        "Austin TX 78701.", "The order id is #W4817420. Your name is Yusuf Rossi and your zip code is 19122.",
        "Confirm with yes, and give the new address when asked.",
        [("find_user_id_by_name_zip", NAME_ZIP),
         ("modify_pending_order_address", {"order_id": "#W4817420", **ADDRESS, "address2": "Apartment 4"})])),
    (make_task("a3", "a busy team member", "You finished task_3 and want it marked done.", "The task id is task_3.",
               "Ask the agent to mark task_3 as completed. Stop once it confirms.",
               [("update_task_status", {"task_id": "task_3", "status": "completed"})], domain="mock"),
     make_task("b3", "a busy team member", "You want task_3 marked done because you finished it.",
               "The task id is task_3. Your user id is user_2.",
               "Stop once it confirms. Ask the agent to mark task_3 as completed.",
               [("get_users", {}), ("update_task_status", {"task_id": "task_3", "status": "completed"})],
               domain="mock")),
]


@pytest.mark.parametrize(("original", "reworded"), REWORDED_TASKS, ids=["cancel", "address", "mock"])
def test_reworded_duplicate_task_is_rejected_naming_the_task_and_score(original, reworded):
    exact_only = DuplicateFilter(threshold=None)
    exact_only.add(original)
    assert not exact_only.check(reworded).rejected  # what the exact check alone lets through
    duplicates = DuplicateFilter()
    duplicates.add(original)
    decision = duplicates.check(reworded)
    assert decision.rejected, decision
    assert decision.reason.startswith(f"near-duplicate of task {original.id} (similar text: word 2-gram Jaccard 0.")
    score = float(decision.reason.split("Jaccard ")[1].split(" ")[0])
    assert 0.5 <= score < 1.0


def test_same_template_on_other_entities_and_other_requests_on_the_same_order_are_kept():
    duplicates = DuplicateFilter()
    duplicates.add(cancel("a1"))
    other_order = cancel("c1", order="#W9183908", email="noah.brown@example.com")  # same wording, other entities
    same_order_other_request = make_task(
        "c2", "a customer", f"You moved; change the shipping address of your pending order {ORDER} to 12 Elm Street, "
        "Apt 4, Austin TX 78701.", f"Your email is {EMAIL}. The order id is {ORDER}.",
        "Give the new address when asked and confirm with yes.",
        [("find_user_id_by_email", {"email": EMAIL}), ("get_order_details", {"order_id": ORDER}),
         ("modify_pending_order_address", {"order_id": ORDER, **ADDRESS})])
    for task in (other_order, same_order_other_request):
        assert not duplicates.check(task).rejected, task.id
    assert duplicates.check(cancel("again")).reason.endswith("(same gold actions on the same entities)")


def test_duplicate_filter_rejects_bad_thresholds():
    with pytest.raises(ValueError):
        DuplicateFilter(threshold=0)


def run(tmp_path, config: EngineConfig, roles, domain=None, name="run"):
    domain = domain or get_domain("mock", num_users=8, tasks_per_user=5)
    store = RunStore.create(tmp_path / name, RunManifest(config=config, seed=config.seed, domain=domain.name))
    try:
        return asyncio.run(DataEngine(domain, roles, store, config).run())
    finally:
        store.close()


def test_engine_rejects_a_reworded_task_from_another_stream(tmp_path):
    def generator(req):  # both streams target task_3; stream 1 rewords it and adds a read
        out = sr.generator(req)
        reworded = "[p0_1]" in req.inputs["plan"]
        out["task"].update(
            reason_for_call="You want task_3 marked done because you finished it." if reworded
            else "You finished task_3 and want it marked done.",
            known_info="The task id is task_3.",
            task_instructions="Stop once it confirms. Ask the agent to mark task_3 as completed." if reworded
            else "Ask the agent to mark task_3 as completed. Stop once it confirms.",
            actions=([{"name": "get_users", "arguments": {}}] if reworded else [])
            + [{"name": "update_task_status", "arguments": {"task_id": "task_3", "status": "completed"}}])
        return out

    cfg = EngineConfig(domain="mock", streams=2, rounds=1, tasks_per_round=1, episodes_per_task=1, max_repairs=0)
    result = run(tmp_path, cfg, sr.scripted_roles(generator=generator))
    first, second = sorted(RunStore.open(result.run_dir, read_only=True).iter_records("task"),
                           key=lambda r: r.work_key)
    assert first.accepted and not second.accepted and second.stage.value == "filter_task"
    assert second.reasons[0].startswith(f"near-duplicate of task {first.task.id} (similar text: word 2-gram Jaccard")
    off = run(tmp_path, cfg.model_copy(update={"near_duplicate_jaccard": None}), sr.scripted_roles(generator=generator),
              name="exact-only")
    assert off.accepted_tasks == 2


def test_tool_ngrams_are_assistant_tool_names_in_order():
    assert tool_ngrams(cancel("x")) == {("find_user_id_by_email",), ("get_order_details",), ("cancel_pending_order",),
                                        ("find_user_id_by_email", "get_order_details"),
                                        ("get_order_details", "cancel_pending_order")}


def test_diversity_report_per_round_without_a_run():
    plans = [PlanPair(plan_id=f"p{r}_0", round=r, synthesis=SynthesisPlan(**draft(intent, "x")["synthesis"]),
                      evaluation=EvaluationPlan(rubric="r"))
             for r, intent in [(0, "cancel"), (1, "cancel"), (1, "return")]]
    mock = REWORDED_TASKS[2][1]
    report = diversity_report(plans, [cancel("a"), mock], {}, {"a": 0, mock.id: 1})
    r0, r1 = report.rounds
    assert (r0.plan_cells_covered, r0.new_plan_cells, r1.plan_cells_covered, r1.new_plan_cells) == (1, 1, 2, 1)
    assert r1.cumulative_plan_cells == 2
    assert (r0.tool_unigrams, r0.tool_bigrams, r0.new_tool_ngrams) == (3, 2, 5)
    assert r1.tool_ngrams == ["get_users", "get_users -> update_task_status", "update_task_status"]
    assert (r1.new_tool_ngrams, r1.cumulative_tool_ngrams) == (3, 8)
    assert (report.tool_unigrams, report.tool_bigrams) == (5, 3)


def test_scripted_run_writes_coverage_per_round_to_diversity_json(tmp_path, tau2_dir):
    retail = get_domain("retail", data_dir=tau2_dir / "retail")
    cfg = EngineConfig(domain="retail", streams=2, rounds=2, tasks_per_round=2, episodes_per_task=1,
                       held_out_split="test")
    result = run(tmp_path, cfg, sr.scripted_roles(), domain=retail)
    data = json.loads((result.run_dir / "diversity.json").read_text())
    assert data["plan_cells_covered"] >= 2 and "gold_action_jaccard_mean" in data  # existing fields kept
    assert [r["round"] for r in data["rounds"]] == [0, 1]
    records = list(RunStore.open(result.run_dir, read_only=True).iter_records("task", accepted=True))
    for rnd in data["rounds"]:
        mine = [r.task for r in records if r.round == rnd["round"]]
        names = {a.name for t in mine for a in t.gold_actions if a.requestor == "assistant"}
        assert rnd["accepted_tasks"] == len(mine) and rnd["tool_unigrams"] == len(names)
        assert rnd["plans"] == 2 and rnd["plan_cells_covered"] >= 1
    first = data["rounds"][0]
    assert first["accepted_tasks"] >= 1 and first["new_plan_cells"] == first["plan_cells_covered"] == 2
    assert "find_user_id_by_email -> get_order_details" in first["tool_ngrams"] and first["tool_bigrams"] == 2
    assert data["rounds"][1]["cumulative_tool_ngrams"] >= first["cumulative_tool_ngrams"] == 5


def test_tasks_naming_no_entity_are_compared_with_each_other_only():
    lookup = make_task("n1", "a curious user", "You want to know who is on the team.", "", "Ask for the team list.",
                       [("get_users", {})], domain="mock")
    reworded = make_task("n2", "a curious user", "You want to know who is on the team, all of them.", "",
                         "Ask for the team list.", [("get_users", {"active": True})], domain="mock")
    duplicates = DuplicateFilter()
    duplicates.add(cancel("a1"))
    assert duplicates.closest(lookup) == (None, 0.0, [])
    duplicates.add(lookup)
    decision = duplicates.check(reworded)
    assert decision.rejected and decision.reason.startswith("near-duplicate of task n1 (similar text")
