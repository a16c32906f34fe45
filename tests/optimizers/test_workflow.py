"""Workflow evolution: bounded proposals from failure statistics, recorded with their effect."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from eigendspy.core.records import Usage
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.store.store import KindSummary, ReasonCount, RunManifest, RunStore, RunSummary
from eigendspy.optimizers.workflow import (
    IntBounds,
    WorkflowBounds,
    WorkflowChange,
    apply_changes,
    apply_to_roles,
    evolve_workflow,
    failure_stats,
    propose_workflow_changes,
    record_changes,
    strictness_of,
)
from eigendspy.testing.roles import generator as scripted_generator
from eigendspy.testing.roles import scripted_roles

NO_OP = ('gold write #0 update_task_status({"task_id": "task_3", "status": "pending"}) changes nothing (the state '
         'already has these values); a write must change the state')
NULL_PASS = ("a null policy (do nothing / transfer / reads only) passes this task's checker: the reward is gameable; "
             "add an assertion a null policy fails (e.g. communicate_info)")


def summary(tasks=10, accepted=2, stages=None, reasons=(), dialogues=0, dialogues_accepted=0, blame=None):
    kinds = {"task": KindSummary(total=tasks, accepted=accepted, rejected=tasks - accepted,
                                 stages=stages if stages is not None else {"validate_task": tasks - accepted},
                                 top_reasons=[ReasonCount(reason=r, count=c) for r, c in reasons])}
    if dialogues:
        kinds["dialogue"] = KindSummary(total=dialogues, accepted=dialogues_accepted,
                                        rejected=dialogues - dialogues_accepted, blame=blame or {})
    return RunSummary(run_id="planted", kinds=kinds, usage=Usage(), plans={})


def test_repairable_validation_rejections_raise_max_repairs_within_bounds():
    planted = summary(reasons=[(NO_OP, 8)])
    assert failure_stats(planted).repairable_rejections == 8
    [change] = propose_workflow_changes(planted, EngineConfig(max_repairs=2))
    assert (change.knob, change.old, change.new, change.applied) == ("max_repairs", 2, 4, True)
    assert "8/10 tasks" in change.reason and "changes nothing" in change.reason
    assert apply_changes(EngineConfig(max_repairs=2), [change]).max_repairs == 4
    tight = WorkflowBounds(max_repairs=IntBounds(lo=0, hi=3))
    assert [c.new for c in propose_workflow_changes(planted, EngineConfig(max_repairs=2), tight)] == [3]
    assert propose_workflow_changes(planted, EngineConfig(max_repairs=3), tight) == []  # at the bound
    lm_down = summary(reasons=[("TimeoutError: simulated LM timeout", 8)])  # not repairable: more rounds won't help
    assert propose_workflow_changes(lm_down, EngineConfig()) == []


def test_other_rules_episodes_strictness_temperature():
    blamed = summary(tasks=4, accepted=4, stages={"accept": 4}, dialogues=8, dialogues_accepted=2,
                     blame={"assistant": 5, "user": 1})
    assert [(c.knob, c.new) for c in propose_workflow_changes(blamed, EngineConfig())] == [("episodes_per_task", 2)]
    duplicate = "near-duplicate of task t1 (same gold actions on the same entities)"
    dropped = summary(stages={"filter_task": 6, "accept": 4}, accepted=4, reasons=[(NULL_PASS, 4), (duplicate, 2)])
    changes = {c.knob: c for c in propose_workflow_changes(dropped, EngineConfig(), temperature=0.5)}
    assert changes["validator_strictness"].new == 2 and changes["temperature"].new == 0.7
    assert not changes["temperature"].applied  # record-only: the engine has no temperature knob
    config = apply_changes(EngineConfig(), list(changes.values()))
    roles = apply_to_roles(scripted_roles(), list(changes.values()))
    assert config.reject_null_pass and roles.task_validator.strict and strictness_of(config, roles) == 2
    # a lenient config is brought back inside the declared floor (strictness >= 1) even with no evidence
    clean = summary(accepted=10, stages={"accept": 10})
    [floor] = propose_workflow_changes(clean, EngineConfig(reject_null_pass=False))
    assert (floor.knob, floor.old, floor.new) == ("validator_strictness", 0, 1)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50),
       st.integers(0, 10), st.integers(1, 10), st.booleans(), st.integers(0, 4), st.integers(0, 4),
       st.integers(1, 3), st.integers(0, 3), st.floats(0, 2))
def test_changes_always_respect_bounds(tasks, validate, null, dup, lm, repairs, episodes, strict, lo, span, elo,
                                       espan, temperature):
    planted = summary(tasks=tasks, accepted=0, stages={"validate_task": validate, "filter_task": null + dup},
                      reasons=[(NO_OP, validate), (NULL_PASS, null), ("near-duplicate of task x", dup),
                               ("RuntimeError: boom", lm)], dialogues=tasks, dialogues_accepted=0,
                      blame={"assistant": tasks})
    bounds = WorkflowBounds(max_repairs=IntBounds(lo=lo, hi=lo + span), episodes_per_task=IntBounds(lo=elo, hi=elo +
                            espan))
    config = EngineConfig(max_repairs=repairs, episodes_per_task=episodes, reject_null_pass=strict)
    changes = propose_workflow_changes(planted, config, bounds, temperature=temperature)
    for change in changes:
        b = getattr(bounds, change.knob)
        assert b.lo <= change.new <= b.hi and change.new != change.old
    new = apply_changes(config, changes)
    for knob in ("max_repairs", "episodes_per_task"):
        if any(c.knob == knob for c in changes):
            assert getattr(bounds, knob).lo <= getattr(new, knob) <= getattr(bounds, knob).hi
    assert len({c.knob for c in changes}) == len(changes)


def test_record_changes_appends_to_the_manifest(tmp_path):
    store = RunStore.create(tmp_path / "run", RunManifest(config=EngineConfig()))
    change = WorkflowChange(knob="max_repairs", old=2, new=4, reason="planted")
    record_changes(store, [change], None, status="proposed")
    record_changes(store, [change], {"delta": {"task_yield": 0.5}}, source_run="run0")
    store.close()
    notes = json.loads((tmp_path / "run" / "manifest.json").read_text())["notes"]["workflow_evolution"]
    assert [(n["knob"], n["old"], n["new"], n["status"]) for n in notes] == [("max_repairs", 2, 4, "proposed"),
                                                                           ("max_repairs", 2, 4, "applied")]
    assert notes[1]["effect"] == {"delta": {"task_yield": 0.5}} and notes[1]["source_run"] == "run0"


def sloppy_generator(req):
    """First drafts write a status the task already has (a no-op); the execution check's reason fixes it."""
    out = scripted_generator(req)
    if "changes nothing" not in req.inputs.get("feedback", ""):
        args = out["task"]["actions"][0]["arguments"]
        args["status"] = re.search(rf'"task_id":"{args["task_id"]}"[^\n]*"status":"(\w+)"', req.inputs["entities"])[1]
    return out


def test_two_round_workflow_evolution_records_its_effect(tmp_path):
    domain = get_domain("mock", num_users=8, tasks_per_user=5)
    config = EngineConfig(domain="mock", streams=2, rounds=1, tasks_per_round=3, max_repairs=0, seed=3)
    report = evolve_workflow(domain, scripted_roles(generator=sloppy_generator), config, tmp_path, rounds=2)
    print("\n" + report.to_markdown())
    before, after = report.steps[0].run, report.steps[1].run
    assert before.task_yield == 0.0 and after.task_yield > 0.5 and after.dialogues_per_task > 0.5
    assert [(c.knob, c.old, c.new) for c in report.steps[0].changes] == [("max_repairs", 0, 2)]
    assert report.steps[1].config["max_repairs"] == 2
    proposed = json.loads((tmp_path / "run0" / "manifest.json").read_text())["notes"]["workflow_evolution"]
    applied = json.loads((tmp_path / "run1" / "manifest.json").read_text())["notes"]["workflow_evolution"]
    assert proposed[0]["status"] == "proposed" and proposed[0]["effect"] is None
    assert applied[0]["status"] == "applied" and applied[0]["source_run"] == before.run_id
    assert applied[0]["effect"]["before"]["task_yield"] == 0.0
    assert applied[0]["effect"]["delta"]["task_yield"] == after.task_yield > 0
    assert (tmp_path / "workflow_evolution.md").exists()
