"""The eigendspy command line, driven in-process with typer's runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from eigendspy.cli import app
from eigendspy.eval.tau2_results import read_results

runner = CliRunner()


def test_demo_writes_a_complete_run(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--oracle", "--out", str(out), "--trials", "2", "--tasks", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["num_tasks"] == 4 and report["num_trials"] == 8
    assert report["pass_hat_k"]["1"] == 1.0
    tasks, sims = read_results(out / "results.json")
    assert len(tasks) == 4 and len(sims) == 8 and all(s.reward == 1.0 for s in sims)
    assert (out / "pass_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tasks_and_verify_on_tau2_mock(tau2_dir):
    result = runner.invoke(app, ["tasks", "--domain", "mock", "--data", str(tau2_dir / "mock")])
    assert result.exit_code == 0, result.output
    assert "10 tasks in mock" in result.output
    result = runner.invoke(app, ["verify", "--domain", "mock", "--data", str(tau2_dir / "mock")])
    assert result.exit_code == 0, result.output
    assert "impossible_task_1" in result.output


def test_tasks_without_data_explains(monkeypatch):
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)
    result = runner.invoke(app, ["tasks", "--domain", "retail"])
    assert result.exit_code == 1 and "pass --data" in result.output


def test_score_regrades_tau2_results_file(tau2_dir):
    result = runner.invoke(app, ["score", str(tau2_dir / "retail" / "results_sample.json"),
                                 "--domain", "retail", "--data", str(tau2_dir / "retail")])
    assert result.exit_code == 0, result.output
    assert "6/6 rewards agree" in result.output


def test_unknown_domain_is_a_clear_error():
    result = runner.invoke(app, ["tasks", "--domain", "bank"])
    assert result.exit_code != 0
    assert "unknown domain 'bank'" in str(result.exception)


def test_synth_inspect_export_with_scripted_roles(tmp_path, monkeypatch):
    from eigendspy.lm import config as lm_config
    from eigendspy.testing import roles as sr
    from eigendspy.testing.lm import scripted_lm

    policies = {"planner": sr.planner, "generator": sr.generator, "task_validator": sr.task_judge,
                "user": sr.user, "assistant": sr.assistant, "trajectory_validator": sr.trajectory_judge,
                "reflector": sr.reflector}
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: {r: scripted_lm(p) for r, p in policies.items()})
    out = tmp_path / "run"
    result = runner.invoke(app, ["synth", "--domain", "mock", "--n", "4", "--out", str(out), "--rounds", "2"])
    assert result.exit_code == 0, result.output
    assert "yield per stage" in result.output and "dialogues:" in result.output
    result = runner.invoke(app, ["inspect", str(out)])
    assert result.exit_code == 0 and "accepted" in result.output and "diversity" in result.output
    result = runner.invoke(app, ["export", str(out), "--to", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "sft_agent").is_dir() and (tmp_path / "data" / "README.md").exists()


def test_synth_exits_nonzero_when_nothing_is_accepted(tmp_path, monkeypatch):
    from eigendspy.lm import config as lm_config
    from eigendspy.testing import roles as sr
    from eigendspy.testing.lm import scripted_lm

    def reject_all(req):
        return {"passed": False, "blame": "assistant", "reasons": ["the agent skipped identification"]}

    policies = {"planner": sr.planner, "generator": sr.generator, "task_validator": sr.task_judge,
                "user": sr.user, "assistant": sr.assistant, "trajectory_validator": reject_all,
                "reflector": sr.reflector}
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: {r: scripted_lm(p) for r, p in policies.items()})
    result = runner.invoke(app, ["synth", "--domain", "mock", "--n", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "nothing was accepted" in result.output and "skipped identification" in result.output


def test_evolve_then_synth_from_compiled(tmp_path, tau2_dir, monkeypatch):
    from eigendspy.lm import config as lm_config
    from eigendspy.testing import roles as sr
    from eigendspy.testing.lm import scripted_lm

    policies = {"planner": sr.planner, "generator": sr.generator, "task_validator": sr.task_judge,
                "user": sr.user, "assistant": lambda req: {"response": "All done, completed.", "tool_calls": []},
                "trajectory_validator": sr.trajectory_judge, "reflector": sr.reflector}
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: {r: scripted_lm(p) for r, p in policies.items()})
    out = tmp_path / "evo"
    result = runner.invoke(app, ["evolve", "--role", "assistant", "--domain", "mock", "--data", str(tau2_dir / "mock"),
                                 "--optimizer", "bootstrap", "--budget", "1", "--n", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "compiled" / "assistant.json").exists() and (out / "report.json").exists()
    result = runner.invoke(app, ["synth", "--domain", "mock", "--n", "2", "--out", str(tmp_path / "run"),
                                 "--compiled", str(out / "compiled")])
    assert "compiled roles loaded: assistant" in result.output


def test_synth_with_a_wrong_compiled_path_names_the_option(tmp_path, monkeypatch):
    from eigendspy.lm import config as lm_config

    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: {})  # it fails before any LM call
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        result = runner.invoke(app, ["synth", "--out", str(tmp_path / "run"), "--compiled", str(bad)])
        assert result.exit_code == 2 and "--compiled" in result.output and "no compiled role" in result.output
        assert not (tmp_path / "run").exists()


def _scripted_roles(monkeypatch):
    from eigendspy.lm import config as lm_config
    from eigendspy.testing import roles as sr
    from eigendspy.testing.lm import scripted_lm

    policies = {"planner": sr.planner, "generator": sr.generator, "task_validator": sr.task_judge,
                "user": sr.user, "assistant": sr.assistant, "trajectory_validator": sr.trajectory_judge,
                "reflector": sr.reflector}
    monkeypatch.setattr(lm_config, "build_role_lms", lambda cfg: {r: scripted_lm(p) for r, p in policies.items()})


def test_resume_with_other_settings_is_refused_unless_forced(tmp_path, monkeypatch):
    _scripted_roles(monkeypatch)
    out = tmp_path / "run"
    assert runner.invoke(app, ["synth", "--n", "2", "--out", str(out)]).exit_code == 0
    manifest = (out / "manifest.json").read_bytes()
    result = runner.invoke(app, ["synth", "--n", "3", "--seed", "5", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "seed: 0 -> 5" in result.output and "n: 2 -> 3" in result.output and "--force" in result.output
    assert (out / "manifest.json").read_bytes() == manifest  # refused before anything was written
    result = runner.invoke(app, ["synth", "--n", "2", "--out", str(out), "--resume", "--concurrency", "3"])
    assert result.exit_code == 0, result.output  # same settings (concurrency only changes speed)
    result = runner.invoke(app, ["synth", "--n", "3", "--seed", "5", "--out", str(out), "--resume", "--force"])
    assert result.exit_code == 0 and "--force" in result.output


def test_n_must_be_at_least_one(tmp_path):
    result = runner.invoke(app, ["synth", "--n", "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and not (tmp_path / "run").exists()


def test_inspect_and_export_say_what_they_skipped(tmp_path, monkeypatch):
    _scripted_roles(monkeypatch)
    out = tmp_path / "run"
    assert runner.invoke(app, ["synth", "--n", "2", "--out", str(out)]).exit_code == 0
    path = out / "dialogues.jsonl"
    path.write_bytes(b"\xff\xfe not a record\n" + path.read_bytes())
    for args in (["inspect", str(out)], ["export", str(out), "--to", str(tmp_path / "data")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "skipped 1 bad stored line" in result.output and f"{path} line 1: not UTF-8" in result.output
