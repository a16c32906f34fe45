"""Planted faults are rejected by the engine, each for the right reason (scripted roles)."""

from __future__ import annotations

import re

import pytest

from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.store.store import RunStore
from eigendspy.testing import roles as sr
from tests.engine.test_engine import big_mock, run_engine

ONE = EngineConfig(domain="mock", streams=1, rounds=1, tasks_per_round=1, episodes_per_task=1, max_repairs=0)


def _mock_task(actions, communicate=("completed",), basis=("DB", "COMMUNICATE")):
    def policy(req):
        out = sr.generator(req)
        out["task"]["actions"] = actions(req)
        out["task"]["communicate_info"] = list(communicate)
        out["task"]["reward_basis"] = list(basis)
        return out
    return policy


def _records(run_dir, kind):
    return list(RunStore.open(run_dir, read_only=True).iter_records(kind))


def _task_of(req):
    pending = re.findall(r'"task_id":"(task_\d+)"[^\n]*"status":"pending"', req.inputs["entities"])
    return pending[0] if pending else "task_1"


def test_task_naming_a_nonexistent_entity(tmp_path):
    gen = _mock_task(lambda req: [{"name": "update_task_status", "arguments": {"task_id": "task_999",
                                                                                "status": "completed"}}])
    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=sr.scripted_roles(generator=gen))
    [rec] = _records(result.run_dir, "task")
    assert not rec.accepted and rec.stage.value == "validate_task"
    assert any("task_999" in r and "not found" in r for r in rec.reasons), rec.reasons


def test_gold_action_that_errors(tmp_path):
    gen = _mock_task(lambda req: [{"name": "create_task", "arguments": {"user_id": "user_1"}}])  # missing title
    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=sr.scripted_roles(generator=gen))
    [rec] = _records(result.run_dir, "task")
    assert not rec.accepted and any("create_task" in r and "error" in r.lower() for r in rec.reasons), rec.reasons


def test_checker_that_a_mutant_passes(tmp_path):
    # every write changes the state, but the last one makes the first redundant: dropping it survives
    gen = _mock_task(lambda req: [
        {"name": "update_task_status", "arguments": {"task_id": _task_of(req), "status": "completed"}},
        {"name": "update_task_status", "arguments": {"task_id": _task_of(req), "status": "pending"}},
        {"name": "update_task_status", "arguments": {"task_id": _task_of(req), "status": "completed"}}])
    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=sr.scripted_roles(generator=gen))
    [rec] = _records(result.run_dir, "task")
    assert not rec.accepted and any("accept a wrong solution (dropped update_task_status #0)" in r
                                    for r in rec.reasons), rec.reasons


def test_null_policy_rejection(tmp_path):
    gen = _mock_task(lambda req: [{"name": "get_users", "arguments": {}}], communicate=(), basis=("DB",))
    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=sr.scripted_roles(generator=gen))
    [rec] = _records(result.run_dir, "task")
    assert not rec.accepted and rec.stage.value == "filter_task" and "null policy" in rec.reasons[0]


def test_near_duplicate_rejection(tmp_path):
    cfg = ONE.model_copy(update={"streams": 2})
    fixed = _mock_task(lambda req: [{"name": "update_task_status", "arguments": {"task_id": "task_3",
                                                                                  "status": "completed"}}])
    domain = get_domain("mock", num_users=8, tasks_per_user=5)
    assert domain.base_db().model.tasks["task_3"].status == "pending"
    result, _ = run_engine(tmp_path, domain, cfg, roles=sr.scripted_roles(generator=fixed))
    first, second = sorted(_records(result.run_dir, "task"), key=lambda r: r.work_key)
    assert first.accepted and not second.accepted
    assert second.stage.value == "filter_task" and "near-duplicate" in second.reasons[0]


def test_held_out_overlap_rejection(tmp_path, tau2_dir):
    retail = get_domain("retail", data_dir=tau2_dir / "retail")
    victim = next(t for t in retail.tasks("test") if any(a.name == "cancel_pending_order" for a in t.gold_actions))

    def gen(req):
        out = sr.generator(req)
        out["task"]["actions"] = [{"name": a.name, "arguments": a.arguments} for a in victim.gold_actions]
        return out

    cfg = ONE.model_copy(update={"domain": "retail"})
    result, _ = run_engine(tmp_path, retail, cfg, roles=sr.scripted_roles(generator=gen))
    [rec] = _records(result.run_dir, "task")
    assert not rec.accepted and f"held-out task {victim.id}" in " ".join(rec.reasons), rec.reasons


def test_user_simulator_that_leaks_its_instructions(tmp_path):
    def leaky_user(req):
        scenario = req.inputs.get("scenario", "")
        if "completed" in req.inputs.get("dialogue", "").split("agent:")[-1]:
            return {"message": "Thanks ###STOP###"}
        instructions = scenario.split("Task instructions:")[-1].strip()
        return {"message": f"My instructions say: {instructions}"}

    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=sr.scripted_roles(user=leaky_user))
    [dialogue] = _records(result.run_dir, "dialogue")
    assert not dialogue.accepted and dialogue.validator.blame == "user"
    assert any("leak" in r.lower() or "instruction" in r.lower() for r in dialogue.reasons), dialogue.reasons


def test_premature_stop_before_the_write(tmp_path):
    def careful_assistant(req):  # asks for confirmation before writing, as policies require
        dialogue = req.inputs.get("dialogue", "")
        task = re.search(r"task_\d+", dialogue).group()
        if "yes" not in dialogue.split("user:")[-1].lower():
            return {"response": f"Shall I mark {task} as completed? Please confirm (yes/no).", "tool_calls": []}
        return sr.assistant(req)

    def impatient_user(req):
        if "confirm" in req.inputs.get("dialogue", ""):
            return {"message": "Never mind. ###STOP###"}
        return sr.user(req)

    roles = sr.scripted_roles(user=impatient_user, assistant=careful_assistant)
    result, _ = run_engine(tmp_path, big_mock(), ONE, roles=roles)
    [dialogue] = _records(result.run_dir, "dialogue")
    assert not dialogue.accepted and not dialogue.checker_passed
    assert dialogue.validator.blame == "user", dialogue.validator


@pytest.mark.parametrize("down_roles", [("planner", "generator"), ("generator",)])
def test_unreachable_lm_stops_early_with_one_message(tmp_path, down_roles):
    from eigendspy.lm.resilience import LMUnavailableError

    calls = {"n": 0}

    def down(req):
        calls["n"] += 1
        raise ConnectionError("connection refused by localhost:1")

    cfg = ONE.model_copy(update={"breaker_threshold": 5, "tasks_per_round": 50})
    with pytest.raises(LMUnavailableError, match="connection refused"):
        run_engine(tmp_path, big_mock(), cfg, roles=sr.scripted_roles(**{r: down for r in down_roles}))
    assert calls["n"] <= 2 * cfg.concurrency  # only calls already in flight finish: not 50 items x 3 attempts
