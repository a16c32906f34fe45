"""Every user mistake is one line on stderr, no traceback, exit 2 (usage) or 1 (failure).

Run as real subprocesses (``python -m eigendspy.cli``): the error boundary lives in the entry
point, not in the typer app that the in-process tests drive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eigendspy.cli.errors import FAILURE, USAGE, describe
from eigendspy.engine.store.manifest import RunExistsError
from eigendspy.lm.resilience import LMUnavailableError


def _run(*args: str, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EIGENDSPY_DEBUG", "EIGENDSPY_TAU2_DATA")}
    if debug:
        env["EIGENDSPY_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "eigendspy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def _one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(lines) == 1, proc.stderr
    assert proc.returncode == code, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _results(path: Path, tasks: list, sims: list) -> Path:
    path.write_text(json.dumps({"info": {}, "tasks": tasks, "simulations": sims}))
    return path


def test_unknown_domain(tmp_path):
    line = _one_line(_run("tasks", "--domain", "nope", cwd=tmp_path), USAGE, "'nope'")
    assert all(name in line for name in ("mock", "retail", "airline", "telecom"))


def test_data_folder_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line(_run("tasks", "--domain", "mock", "--data", str(tmp_path / "empty"), cwd=tmp_path), USAGE,
              str(tmp_path / "empty"))
    _one_line(_run("tasks", "--domain", "mock", "--data", str(tmp_path / "absent"), cwd=tmp_path), USAGE,
              str(tmp_path / "absent"))


@pytest.mark.parametrize(("content", "needle"), [
    (b"\xff\xfe[", "UTF-8"),
    (b'[{"id": "a", ', "JSON"),
    (b"not json at all", "JSON"),
    (b'[{"id": "a", "user_scenario": 5}]', "user_scenario"),
])
def test_bad_tasks_file_in_data(tmp_path, tau2_dir, content, needle):
    data = tmp_path / "mock"
    shutil.copytree(tau2_dir / "mock", data)
    (data / "tasks.json").write_bytes(content)
    _one_line(_run("tasks", "--domain", "mock", "--data", str(data), cwd=tmp_path), USAGE, "tasks.json", needle)


@pytest.mark.parametrize(("content", "needle"), [
    (b'{"info": {}, "tasks": [\xff]}', "UTF-8"),
    (b'{"info": {}, "tasks": [{"id": "a"', "JSON"),
    (b"<html></html>", "JSON"),
    (b"[" * 100_000, "nested too deeply"),
    (b'{"info": {}, "simulations": []}', "'tasks'"),
    (b'{"info": {}, "tasks": [{"id": "a", "user_scenario": 5}], "simulations": []}', "user_scenario"),
    (b'{"info": {}, "tasks": [], "simulations": [{"task_id": "a"}]}', "'id'"),
])
def test_bad_results_file(tmp_path, content, needle):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    _one_line(_run("score", str(path), "--domain", "mock", cwd=tmp_path), USAGE, str(path), needle)


def test_results_file_missing(tmp_path):
    _one_line(_run("score", str(tmp_path / "nope.json"), "--domain", "mock", cwd=tmp_path), USAGE, "nope.json")


def test_unknown_task_id_in_results_file(tmp_path):
    sim = {"id": "s1", "task_id": "ghost", "termination_reason": "user_stop", "messages": []}
    path = _results(tmp_path / "results.json", [], [sim])
    _one_line(_run("score", str(path), "--domain", "mock", cwd=tmp_path), USAGE, str(path), "ghost")


@pytest.mark.parametrize("command", ["inspect", "export"])
def test_run_dir_that_is_not_a_run(tmp_path, command):
    (tmp_path / "notarun").mkdir()
    _one_line(_run(command, str(tmp_path / "notarun"), cwd=tmp_path), USAGE, "notarun", "not a run directory")


def test_usage_errors_are_one_line(tmp_path):
    _one_line(_run("tasks", cwd=tmp_path), USAGE, "--domain", "eigendspy tasks --help")
    _one_line(_run("tasks", "--bogus", cwd=tmp_path), USAGE, "--bogus")
    _one_line(_run("eval", "--domain", "mock", "--agent", "zzz", cwd=tmp_path), USAGE, "--agent", "zzz")


def test_debug_shows_the_traceback(tmp_path):
    for proc in (_run("--debug", "tasks", "--domain", "nope", cwd=tmp_path),
                 _run("tasks", "--domain", "nope", cwd=tmp_path, debug=True)):
        assert proc.returncode == USAGE
        assert "Traceback" in proc.stderr and proc.stderr.rstrip().splitlines()[-1].startswith("error: unknown domain")


def test_help_texts(tmp_path):
    proc = _run("synth", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "[lm]" in proc.stdout
    proc = _run("tasks", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "telecom" in proc.stdout and "airline" in proc.stdout
    assert _run("--help", cwd=tmp_path).returncode == 0


def test_unexpected_errors_are_failures():
    message, code = describe(RuntimeError("boom"))
    assert code == FAILURE and "boom" in message and "--debug" in message


def test_unreachable_lm_is_its_message_alone():
    text = "20 LM calls in a row failed (last: ConnectionError); check the model id, API key and endpoint"
    assert describe(LMUnavailableError(text)) == (text, FAILURE)


def test_existing_run_names_the_flag():
    message, code = describe(RunExistsError("runs/x"))
    assert code == USAGE and message.startswith("runs/x is not empty") and "--resume" in message and "--out" in message
    assert "resume=True" not in message and "RunExistsError" not in message
