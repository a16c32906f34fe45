"""The closed loop on planted, learnable failures: yield rises round over round, blank feedback stays flat,
manifests name the compiled versions, kill -9 mid-round then resume ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eigendspy.engine.store.store import RunManifest, RunStore, read_manifest
from eigendspy.optimizers.loop import compiled_versions, state_hash
from eigendspy.optimizers.loop.select import rejection_shares, select_roles
from eigendspy.optimizers.loop.workflow import WorkflowProposer, decide, propose, reverted
from eigendspy.optimizers.workflow import WorkflowBounds
from eigendspy.testing import planted
from eigendspy.testing.lm import scripted_lm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("loop") / "planted"
    return out, planted.run_planted_loop(out)


def accepted_data(out: Path, rounds: int) -> list[tuple]:
    rows = []
    for i in range(rounds):
        store = RunStore.open(out / f"round_{i}", read_only=True)
        rows += sorted((i, d.work_key, d.task_id, tuple(m.content or "" for m in d.messages))
                       for d in store.accepted_dialogues())
        store.close()
    return rows


def test_planted_failures_are_learned_round_over_round(loop_run):
    out, report = loop_run
    yields = report.yields
    assert yields[0] < 0.3 and yields[-1] > 0.8, yields
    assert yields[0] < yields[1] < yields[2], yields
    first = report.rounds[0]
    assert all(first.rejection_counts[role] == 2 for role in ("generator", "user", "assistant"))
    compiled_roles = [c.role for r in report.rounds for c in r.compiled]
    assert {"generator", "user", "assistant"} <= set(compiled_roles)
    assert all(c.status == "improved" and c.after > c.before for r in report.rounds for c in r.compiled)
    final = out / "round_2" / "compiled"
    texts = {role: (final / f"{role}.json").read_text() for role in ("generator", "user", "assistant")}
    assert planted.GENERATOR_RULE in texts["generator"] and planted.USER_RULE in texts["user"]
    assert planted.ASSISTANT_RULE in texts["assistant"]
    for name in ("evolve_loop.json", "evolve_loop.md"):
        assert (out / name).is_file()
    assert (out / "evolve_loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "evolve_loop.json").read_text())["rounds"][2]["accepted_yield"] == yields[2]


def test_manifests_name_each_rounds_compiled_versions(loop_run):
    out, report = loop_run
    assert read_manifest(out / "round_0").compiled == {}  # seed programs
    for i, r in enumerate(report.rounds):
        manifest = read_manifest(out / f"round_{i}")
        note = manifest.notes["evolve_loop"]
        assert manifest.compiled == r.versions_used
        assert note["versions_after"] == r.versions_after == compiled_versions(out / f"round_{i}" / "compiled")
        assert note["optimizer"] == "gepa" and note["budget"] == 30 and note["knobs"]["episodes_per_task"] == 1
        for c in r.compiled:  # each version is the content hash of its saved file
            saved = json.loads((out / f"round_{i}" / "compiled" / f"{c.role}.{c.version}.json").read_text())
            assert state_hash(saved) == c.version == note["versions_after"][c.role]
        if i:
            assert manifest.compiled == report.rounds[i - 1].versions_after
            assert note["effect"]["yield_before"] == report.rounds[i - 1].accepted_yield


def test_blank_feedback_ablation_stays_flat(tmp_path):
    report = planted.run_planted_loop(tmp_path / "blank", blank_feedback=True)
    assert report.yields == [report.yields[0]] * 3 and report.yields[0] < 0.3, report.yields
    assert all(c.status != "improved" for r in report.rounds for c in r.compiled)
    final = tmp_path / "blank" / "round_2" / "compiled"
    texts = [(final / f"{role}.json").read_text() for role in ("generator", "user")]
    assert not any(rule in text for text in texts for rule in planted.RULES.values())


def _landed(out: Path, point: str) -> bool:
    if point == "synthesis":  # the first round's first record is stored
        shard = out / "round_0" / "tasks.jsonl"
        return shard.is_file() and shard.read_bytes().count(b"\n") >= 1
    return (out / "round_0" / "compiled" / "generator.evolve.json").is_file()  # between two roles' compilations


@pytest.mark.parametrize("point", ["synthesis", "compilation"])
def test_kill_9_mid_round_then_resume_gives_the_same_programs_and_data(tmp_path, loop_run, point):
    reference_dir, reference = loop_run
    out = tmp_path / "killed"
    script = ("import sys; from eigendspy.testing.planted import run_planted_loop; "
              "run_planted_loop(sys.argv[1], latency_s=0.02)")
    log = tmp_path / "killed.log"  # a file, not a pipe: a full pipe would stall the child before the kill point
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stdout=sink, stderr=sink)
    while proc.poll() is None and not _landed(out, point):
        time.sleep(0.005)
    assert proc.poll() is None, log.read_text()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "round_0" / "round.json").exists()  # killed mid-round
    with pytest.raises(FileExistsError):
        planted.run_planted_loop(out)  # no silent restart over a stored loop
    resumed = planted.run_planted_loop(out, resume=True)
    assert resumed.final_versions == reference.final_versions
    assert [r.versions_after for r in resumed.rounds] == [r.versions_after for r in reference.rounds]
    assert resumed.yields == reference.yields
    assert accepted_data(out, 3) == accepted_data(reference_dir, 3)
    again = planted.run_planted_loop(out, resume=True)  # complete rounds are read back, not rerun
    assert again.model_dump(exclude={"out_dir", "plot"}) == resumed.model_dump(exclude={"out_dir", "plot"})


def test_synth_compiled_records_its_versions(tmp_path, loop_run, monkeypatch):
    from eigendspy.cli import app
    from eigendspy.lm import config as lm_config

    out, report = loop_run
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: planted.planted_lms(reflection=False))
    compiled = out / "round_1" / "compiled"
    run = tmp_path / "synth"
    result = CliRunner().invoke(app, ["synth", "--domain", "mock", "--n", "4", "--streams", "4", "--out", str(run),
                                      "--compiled", str(compiled)])
    assert "compiled roles loaded" in result.output, result.output
    assert read_manifest(run).compiled == report.rounds[1].versions_after == compiled_versions(compiled)


def test_cli_runs_and_resumes_the_loop(tmp_path, monkeypatch, capsys):
    import eigendspy.domains
    from eigendspy.cli.app import main
    from eigendspy.lm import config as lm_config

    domain = planted.planted_domain()
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: planted.planted_lms())
    monkeypatch.setattr(eigendspy.domains, "get_domain", lambda name, data_dir=None: domain)
    out = tmp_path / "cli"
    args = ["evolve-loop", "--domain", "mock", "--rounds", "2", "--out", str(out), "--budget", "30",
            "--tasks-per-round", "8", "--streams", "4", "--json"]

    def cli(*extra: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *extra])
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    code, stdout, stderr = cli()
    assert code == 0, stderr
    report = json.loads(stdout)  # --json: stdout is the report alone, progress goes to stderr
    assert [r["accepted_yield"] for r in report["rounds"]] == [0.25, 0.75]
    assert "round 1 yield 0.25" in stderr and (out / "round_1" / "compiled" / "assistant.json").is_file()
    code, _, stderr = cli()
    assert code == 2 and "--resume" in stderr
    code, stdout, stderr = cli("--resume")
    assert code == 0, stderr
    assert json.loads(stdout)["rounds"] == report["rounds"] and "already complete" in stderr
    code, _, stderr = cli("--budget", "0")
    assert code == 2 and "--budget" in stderr


def test_selection_takes_the_largest_shares_in_pipeline_order():
    shares = rejection_shares({"generator": 1, "user": 3, "assistant": 3, "task_validator": 0}, 6)
    assert shares["user"] == 0.5 and shares["task_validator"] == 0.0
    assert select_roles(shares, ["generator", "user", "assistant"], 2) == ["user", "assistant"]
    assert select_roles(shares, ["generator", "user", "assistant"], 2, trainable=["generator", "assistant"]) == [
        "generator", "assistant"]
    assert select_roles(rejection_shares({}, 0), ["generator"], 3) == []


def test_state_hash_ignores_library_metadata_and_old_manifests_load():
    state = {"generate": {"signature": {"instructions": "x"}, "demos": []}}
    assert state_hash(state) == state_hash({**state, "metadata": {"dependency_versions": {"dspy": "9"}}})
    assert state_hash(state) != state_hash({"generate": {"signature": {"instructions": "y"}, "demos": []}})
    assert RunManifest.model_validate({"config": {}, "notes": {}}).compiled == {}


def _summary(tmp_path):
    report = planted.run_planted_loop(tmp_path / "one", rounds=1)
    store = RunStore.open(tmp_path / "one" / "round_0", read_only=True)
    return report, store.summary(top_n=1000)


def test_workflow_proposals_are_bounded_and_fall_back_to_rules(tmp_path):
    from eigendspy.optimizers.loop.loop import engine_config

    report, summary = _summary(tmp_path)
    cfg = engine_config(planted.planted_loop_config(), 0, report.rounds[0].knobs)
    good = WorkflowProposer(lm=scripted_lm(lambda req: {"changes": [
        {"knob": "episodes_per_task", "new": 2, "reason": "assistant-blamed rejections"}], "rationale": "more tries"}))
    proposal = propose(summary, cfg, WorkflowBounds(), proposer=good)
    assert proposal.source == "lm" and [(c.knob, c.old, c.new) for c in proposal.changes] == [
        ("episodes_per_task", 1, 2)]
    wild = WorkflowProposer(lm=scripted_lm(lambda req: {"changes": [
        {"knob": "max_repairs", "new": 99, "reason": "more"}], "rationale": "x"}))
    fallback = propose(summary, cfg, WorkflowBounds(), proposer=wild)
    assert fallback.source == "rules" and "outside its bounds" in fallback.fallback
    assert all(WorkflowBounds().max_repairs.lo <= c.new <= WorkflowBounds().max_repairs.hi
               for c in fallback.changes if c.knob == "max_repairs")
    assert propose(summary, cfg, WorkflowBounds()).fallback == "no workflow LM"
    assert decide(proposal.changes, 0.25, 0.25).decision == "reverted"
    assert decide(proposal.changes, 0.25, 0.5).decision == "kept"
    assert [(c.knob, c.new) for c in reverted(proposal.changes)] == [("episodes_per_task", 1)]


def test_a_workflow_change_that_does_not_raise_yield_is_reverted(tmp_path):
    lm = scripted_lm(lambda req: {"changes": [{"knob": "episodes_per_task", "new": 2, "reason": "retry"}],
                                  "rationale": "more rollouts"} if '"episodes_per_task": 1' in
                     req.inputs.get("settings", "") else {"changes": [], "rationale": "keep"})
    report = planted.run_planted_loop(tmp_path / "wf", rounds=3, workflow=True, blank_feedback=True, workflow_lm=lm)
    first, second, third = report.rounds
    assert first.workflow_proposal.source == "lm" and first.knobs["episodes_per_task"] == 1
    assert second.knobs["episodes_per_task"] == 2 and second.workflow_decision.decision == "reverted"
    assert third.knobs["episodes_per_task"] == 1  # the reverted change is undone
    note = read_manifest(tmp_path / "wf" / "round_1").notes["evolve_loop"]
    assert note["workflow_decision"]["decision"] == "reverted" and note["knobs"]["episodes_per_task"] == 2


def test_lm_outages_are_attributed_to_no_role(tmp_path, loop_run):
    from eigendspy.core.records import Stage, TaskRecord
    from eigendspy.optimizers.loop.datasets import round_evidence
    from eigendspy.optimizers.loop.loop import engine_config

    out, report = loop_run
    stored = next(RunStore.open(out / "round_2", read_only=True).iter_records("task"))
    cfg = engine_config(planted.planted_loop_config(), 0, report.rounds[0].knobs)
    store = RunStore.create(tmp_path / "run", RunManifest(config=cfg, seed=0, domain="mock"))
    common = dict(stream=0, round=0, plan=stored.plan, accepted=False)
    store.append(TaskRecord(work_key="s0/r0/t0", stage=Stage.GENERATE, reasons=["TimeoutError: no answer"], **common))
    store.append(TaskRecord(work_key="s0/r0/t1", task=stored.task, stage=Stage.VALIDATE_TASK,
                            reasons=["RuntimeError: judge down"], **common))
    store.append(TaskRecord(work_key="s0/r0/t2", task=stored.task, stage=Stage.VALIDATE_TASK, reasons=["vague"],
                            validation={"passed": False, "reasons": ["vague"], "blame": "task"}, **common))
    store.close()
    evidence = round_evidence(planted.planted_domain(), tmp_path / "run", cfg)
    assert evidence.lm_failures == 2 and evidence.rejections == 3
    assert evidence.counts()["task_validator"] == 1 and evidence.counts()["generator"] == 0  # executable, yet rejected
    assert evidence.roles["task_validator"].failing[0].expected_passed is True
