"""Export re-runs the dialogue pre-checks: an accepted dialogue that fails them is never a training row."""

from __future__ import annotations

import asyncio
import logging

import pytest
from datasets import load_from_disk
from typer.testing import CliRunner

from eigendspy.cli import app
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.oracle import OracleAssistant, OracleUser
from eigendspy.core.orchestrator import Orchestrator
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.engine.dataset_card import DatasetCard
from eigendspy.engine.export import export_all, export_run
from eigendspy.engine.store.store import RunManifest, RunStore

LEAK = "You are a customer service agent. You must provide a valid JSON object with your answer."
SCENARIO = "You are user_1. Ask the agent to create a task titled Demo prep for you."


@pytest.fixture(autouse=True)
def built_in_domains(monkeypatch):
    """``get_domain("mock")`` means the built-in mock (with its owner-lookup rule), even where tau2 data is set."""
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)


@pytest.fixture
def domain():
    mock = get_domain("mock")
    assert [r.then for r in mock.rules] == [["create_task"]]  # create_task needs a get_users first
    return mock


def _call(name: str, call_id: str, **arguments) -> list[Message]:
    """An assistant tool call and its successful answer."""
    return [Message.assistant(tool_calls=[ToolCall(id=call_id, name=name, arguments=arguments, requestor="assistant")]),
            Message.tool(call_id, "done", "assistant", False)]


def _dialogue(*, lookup: bool = True, closing: str = "Done: the task Demo prep now belongs to you. Anything else?"
              ) -> list[Message]:
    """The user asks for a task; the assistant (optionally) looks the user up, creates it and says so."""
    return [Message.assistant("Hi! How can I help you today?"),
            Message.user("Hi, I'm user_1. Please create a task titled Demo prep for me."),
            *(_call("get_users", "c0") if lookup else []),
            *_call("create_task", "c1", user_id="user_1", title="Demo prep"),
            Message.assistant(closing), Message.user("No, thanks. ###STOP###")]


def _task(task_id: str) -> Task:
    return Task.model_validate({"id": task_id, "user_scenario": {"instructions": SCENARIO}})


def _task_record(task_id: str) -> TaskRecord:
    return TaskRecord(work_key=f"t:{task_id}", stream=0, round=0, task=_task(task_id), accepted=True,
                      stage=Stage.ACCEPT, null_pass=False)


def _record(task_id: str, messages: list[Message], *, key: str, accepted: bool = True) -> DialogueRecord:
    return DialogueRecord(work_key=key, task_id=task_id, trial=0, seed=0, domain="mock", messages=messages,
                          termination_reason="user_stop", reward=1.0 if accepted else 0.0, checker_passed=accepted,
                          accepted=accepted, stage=Stage.ACCEPT if accepted else Stage.CHECK,
                          reasons=[] if accepted else ["db mismatch"])


TASKS = [_task_record("clean"), _task_record("leaky"), _task_record("unordered")]


def _work_keys(result, name: str) -> list[str]:
    return load_from_disk(str(result.paths[name]))["work_key"]


def test_a_recited_prompt_is_left_out_of_both_sft_sets_and_named(domain, tmp_path, caplog):
    records = [_record("clean", _dialogue(), key="d:clean"), _record("leaky", _dialogue(closing=LEAK), key="d:leak")]
    with caplog.at_level(logging.WARNING):
        result = export_all(TASKS, records, {"mock": domain}, tmp_path)
    assert _work_keys(result, "sft_agent") == _work_keys(result, "sft_user") == ["d:clean"]
    assert result.counts == {"sft_agent": 1, "sft_user": 1, "rl_tasks": 3}
    [line] = result.rejected_at_export
    assert line.startswith("leaky d:leak: format_chatter:format_instruction: ") and "valid JSON object" in line
    card = result.card
    assert card.rejected_at_export == {"format_chatter:format_instruction": 1}
    assert (card.dialogues_total, card.dialogues_accepted) == (2, 2)  # the stored verdicts, unchanged
    assert DatasetCard.model_validate_json(result.paths["card"].read_text()) == card
    readme = result.paths["readme"].read_text()
    assert "left out at export by the dialogue pre-checks: 1 (`format_chatter:format_instruction` 1)" in readme
    assert any("d:leak" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_policy_order_violation_is_left_out(domain, tmp_path):
    records = [_record("clean", _dialogue(), key="d:clean"),
               _record("unordered", _dialogue(lookup=False), key="d:unordered")]
    result = export_all(TASKS, records, {"mock": domain}, tmp_path)
    assert _work_keys(result, "sft_agent") == _work_keys(result, "sft_user") == ["d:clean"]
    assert result.card.rejected_at_export == {"policy_order": 1}
    [line] = result.rejected_at_export
    assert line.startswith("unordered d:unordered: policy_order: ") and "create_task" in line and "get_users" in line


def test_without_the_task_the_checks_that_need_none_still_run(domain, tmp_path):
    """A hand-written record whose task is neither exported nor in the domain: leakage and ordering still apply."""
    records = [_record("clean", _dialogue(), key="d:clean"),
               _record("gone", _dialogue(closing=LEAK), key="d:leak"),
               _record("gone", _dialogue(lookup=False), key="d:unordered")]
    result = export_all(TASKS, records, {"mock": domain}, tmp_path)
    assert _work_keys(result, "sft_agent") == ["d:clean"]
    assert result.card.rejected_at_export == {"format_chatter:format_instruction": 1, "policy_order": 1}
    assert [line.split(": ")[0] for line in result.rejected_at_export] == ["gone d:leak", "gone d:unordered"]


def test_several_findings_count_once_under_the_first(domain, tmp_path):
    both = _record("leaky", _dialogue(lookup=False, closing=LEAK), key="d:both")
    result = export_all(TASKS, [both], {"mock": domain}, tmp_path)
    assert result.counts["sft_agent"] == 0 and sum(result.card.rejected_at_export.values()) == 1
    [line] = result.rejected_at_export
    assert line.startswith("leaky d:both: format_chatter:format_instruction: ") and "(+1 more: policy_order)" in line


def test_prechecks_off_keeps_every_accepted_dialogue(domain, tmp_path):
    records = [_record("clean", _dialogue(), key="d:clean"), _record("leaky", _dialogue(closing=LEAK), key="d:leak"),
               _record("unordered", _dialogue(lookup=False), key="d:unordered")]
    result = export_all(TASKS, records, {"mock": domain}, tmp_path, prechecks=False)
    expected = ["d:clean", "d:leak", "d:unordered"]
    assert _work_keys(result, "sft_agent") == _work_keys(result, "sft_user") == expected
    assert result.rejected_at_export == [] and result.card.rejected_at_export == {}


def test_rejected_dialogues_stay_rejected_and_are_not_rechecked(domain, tmp_path):
    records = [_record("clean", _dialogue(), key="d:clean"),
               _record("leaky", _dialogue(closing=LEAK), key="d:leak", accepted=False)]
    result = export_all(TASKS, records, {"mock": domain}, tmp_path)
    assert _work_keys(result, "sft_agent") == ["d:clean"]
    assert result.rejected_at_export == [] and result.card.rejected_by_stage == {"check": 1}


def _same_export(domain, tasks, records, tmp_path):
    on = export_all(tasks, records, {"mock": domain}, tmp_path / "on")
    off = export_all(tasks, records, {"mock": domain}, tmp_path / "off", prechecks=False)
    assert on.counts == off.counts and on.card == off.card and on.rejected_at_export == []
    for name in on.counts:
        assert load_from_disk(str(on.paths[name]))[:] == load_from_disk(str(off.paths[name]))[:]
    readme = on.paths["readme"].read_text()
    assert readme == off.paths["readme"].read_text() and "left out at export" not in readme
    return on


def test_clean_data_exports_exactly_as_without_prechecks(domain, tmp_path):
    records = [_record("clean", _dialogue(), key="d:clean"), _record("leaky", _dialogue(), key="d:again"),
               _record("unordered", _dialogue(lookup=False), key="d:rejected", accepted=False)]
    result = _same_export(domain, TASKS, records, tmp_path)
    assert result.counts == {"sft_agent": 2, "sft_user": 2, "rl_tasks": 3}
    assert "rejected_at_export" in result.paths["card"].read_text()  # the field is written, empty


def test_tau2_oracle_dialogues_export_unchanged(tau2_dir, tmp_path):
    """Real oracle episodes of tau2's mock tasks pass every pre-check: nothing is left out."""
    tau2 = get_domain("mock", data_dir=tau2_dir / "mock")
    ids = ("update_task_1", "create_task_1")
    orch = Orchestrator(tau2, OracleAssistant(), OracleUser())
    records = [_record(tid, asyncio.run(orch.run(tau2.task(tid))).messages, key=f"d:{tid}") for tid in ids]
    tasks = [TaskRecord(work_key=f"t:{tid}", stream=0, round=0, task=tau2.task(tid), accepted=True,
                        stage=Stage.ACCEPT, null_pass=False) for tid in ids]
    assert _same_export(tau2, tasks, records, tmp_path).counts["sft_agent"] == 2


def _run_dir(root, records):
    with RunStore.create(root, RunManifest(run_id="run-p", domain="mock")) as store:
        for record in [*TASKS, *records]:
            store.append(record)
    return root


def test_export_run_and_the_cli_report_what_was_left_out(domain, tmp_path):
    records = [_record("clean", _dialogue(), key="d:clean"), _record("leaky", _dialogue(closing=LEAK), key="d:leak"),
               _record("unordered", _dialogue(lookup=False), key="d:unordered")]
    run = _run_dir(tmp_path / "run", records)
    result = export_run(run, {"mock": domain})
    assert _work_keys(result, "sft_agent") == ["d:clean"] and len(result.rejected_at_export) == 2
    assert export_run(run, {"mock": domain}, tmp_path / "all", prechecks=False).counts["sft_agent"] == 3

    out = CliRunner().invoke(app, ["export", str(run), "--to", str(tmp_path / "cli")])
    assert out.exit_code == 0, out.output
    assert "left out 2 accepted dialogue(s) at export" in out.output
    assert "  format_chatter:format_instruction: 1" in out.output and "  policy_order: 1" in out.output
    assert len(load_from_disk(str(tmp_path / "cli" / "sft_agent"))) == 1
    out = CliRunner().invoke(app, ["export", str(run), "--to", str(tmp_path / "cli-all"), "--no-prechecks"])
    assert out.exit_code == 0, out.output
    assert "left out" not in out.output and len(load_from_disk(str(tmp_path / "cli-all" / "sft_agent"))) == 3
