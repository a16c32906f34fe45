"""``synth``, ``export``, ``inspect`` and ``verify`` failing as one line, run as real subprocesses.

LM settings that cannot work are refused before a run directory exists; a run that fails before
storing anything removes the directory it made, so the same command can be rerun as is; a damaged
manifest names its file and the fix; a hung LM server stops the run within its timeout.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eigendspy.cli.errors import FAILURE, USAGE
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.hung_server import hung_server as serve_hung
from tests.cli.test_errors import _one_line, _run
from tests.engine.store_writer_script import make_task

_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _KEY_VARS:  # the subprocess inherits this environment
        monkeypatch.delenv(name, raising=False)


def _roles(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return path


def _synth(tmp_path: Path, config: Path, out: Path, *extra: str):
    return _run(
        "synth", "--domain", "mock", "--n", "1", "--config", str(config), "--out", str(out), *extra, cwd=tmp_path
    )


@pytest.mark.parametrize(
    ("entry", "needles"),
    [
        ('"nosuchprovider/xyz"', ("'nosuchprovider/xyz' names no provider",)),
        ('"gpt4"', ("'gpt4' names no provider",)),
        ('"openai/gpt-4o-mini"', ("OPENAI_API_KEY is not set", "set OPENAI_API_KEY", "api_key")),
    ],
)
def test_unusable_lms_fail_before_a_run_dir_exists(tmp_path, no_keys, entry, needles):
    config = _roles(tmp_path, f"[lm]\ndefault = {entry}\n")
    out = tmp_path / "out"
    lines = [_one_line(_synth(tmp_path, config, out), USAGE, "role 'planner'", str(config), *needles) for _ in range(2)]
    assert lines[0] == lines[1] and "not empty" not in lines[0]  # the rerun is not blocked
    assert not out.exists()
    assert "RouterConfig" not in lines[0] and "Error" not in lines[0]  # no Python class names


def test_missing_key_of_one_role_names_that_role(tmp_path, no_keys):
    config = _roles(tmp_path, '[lm]\ndefault = "local"\n[lm.roles]\nassistant = "anthropic/claude-3-5-haiku-latest"\n')
    out = tmp_path / "out"
    out.mkdir()  # an empty directory given by the user is used, and stays empty on failure
    _one_line(_synth(tmp_path, config, out), USAGE, "role 'assistant'", "[lm.roles] assistant", "ANTHROPIC_API_KEY")
    assert out.is_dir() and not list(out.iterdir())


def test_existing_run_is_refused_with_the_flags(tmp_path):
    out = tmp_path / "out"
    RunStore.create(out, RunManifest()).close()
    config = _roles(tmp_path, '[lm]\ndefault = "local"\n')
    line = _one_line(_synth(tmp_path, config, out), USAGE, str(out), "--resume", "--out")
    assert "resume=True" not in line
    line = _one_line(_run("demo-synth", "--out", str(out), cwd=tmp_path), USAGE, str(out), "--out")
    assert "--resume" not in line  # demo-synth has no such flag


def _damaged_run(root: Path, damage: str) -> Path:
    with RunStore.create(root, RunManifest(domain="mock"), fsync=False) as store:
        store.append(make_task(0))
    manifest = root / "manifest.json"
    if damage == "missing":
        manifest.unlink()
    else:
        manifest.write_bytes(
            {
                "truncated": manifest.read_bytes()[:40],
                "not utf-8": b"\xff\xfe{}",
                "wrong schema": b'{"run_id": 5, "lms": []}',
            }[damage]
        )
    return root


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("truncated", "not valid JSON"),
        ("not utf-8", "not UTF-8"),
        ("wrong schema", "field 'run_id'"),
        ("missing", "no manifest"),
    ],
)
@pytest.mark.parametrize("command", ["synth --resume", "export", "inspect"])
def test_damaged_manifest_is_one_line_naming_file_and_fix(tmp_path, damage, needle, command):
    run = _damaged_run(tmp_path / "run", damage)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    if command == "synth --resume":
        proc = _synth(tmp_path, _roles(tmp_path, '[lm]\ndefault = "local"\n'), run, "--resume")
    else:
        proc = _run(command, str(run), cwd=tmp_path)
    _one_line(proc, USAGE, str(run / "manifest.json"), needle, "restore it from a copy", "--out")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # the records are untouched


@pytest.fixture
def hung_server() -> Iterator[str]:
    """An LM endpoint on 127.0.0.1 that accepts connections and never answers."""
    with serve_hung() as url:
        yield url


def test_hung_lm_stops_synth_within_its_timeout(tmp_path, no_keys, hung_server):
    # vllm-server/ needs no key (it sends "EMPTY"): with no key in the environment the call still
    # reaches the server, and the run stops on the server's silence, not on a missing key.
    config = _roles(
        tmp_path,
        f'[lm]\ndefault = {{ model = "vllm-server/m", api_base = "{hung_server}", timeout_s = 2, num_retries = 0 }}\n',
    )
    out = tmp_path / "out"
    for _ in range(2):  # nothing was stored, so the same command runs again instead of "not empty"
        start = time.monotonic()
        proc = _synth(tmp_path, config, out)
        assert time.monotonic() - start < 60  # engine retries x 2 s; DSPy's default would wait 600 s a call
        _one_line(proc, FAILURE, "Timeout", hung_server, "timeout_s 2", "role planner")
        assert not out.exists()


def test_verify_lists_a_task_with_an_unknown_gold_tool(tmp_path, tau2_dir):
    data = tmp_path / "mock"
    shutil.copytree(tau2_dir / "mock", data)
    (data / "split_tasks.json").unlink(missing_ok=True)
    good = json.loads((data / "tasks.json").read_text())[0]
    ghost = json.loads(json.dumps(good)) | {"id": "ghost"}
    ghost["evaluation_criteria"]["actions"].append({"action_id": "g", "name": "no_such_tool", "arguments": {}})
    (data / "tasks.json").write_text(json.dumps([good, ghost]))
    proc = _run("verify", "--domain", "mock", "--data", str(data), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    unverified = proc.stdout[proc.stdout.index("unverified") :]
    assert "'ghost'" in unverified and f"'{good['id']}'" not in unverified
    assert "unknown tools: no_such_tool" in proc.stdout
