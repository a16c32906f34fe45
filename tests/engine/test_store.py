"""Run store: round trips, idempotency, manifest, shards, concurrency, torn-tail repair and a real kill -9."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from eigendspy.core.records import DialogueRecord, TaskRecord
from eigendspy.engine.store.store import RunExistsError, RunManifest, RunStore, package_versions
from tests.engine.store_writer_script import make_dialogue, make_task

REPO = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).resolve().parent / "store_writer_script.py"


class _Config(BaseModel):
    repair_rounds: int = 2
    threshold: float = 0.5


def _manifest() -> RunManifest:
    return RunManifest(
        config=_Config(),
        lms={"assistant": "openai/gpt-4o-mini", "user": "scripted"},
        seed=7,
        domain="retail",
        data_dir="/data/tau2/retail",
    )


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_round_trip_both_kinds(tmp_path: Path) -> None:
    task, dlg = make_task(1), make_dialogue(1, accepted=False, reasons=("checker failed",))
    with RunStore.create(tmp_path / "run", _manifest()) as store:
        assert store.append(task) and store.append(dlg)
        (got_task,) = store.iter_records("task")
        (got_dlg,) = store.iter_records("dialogue")
    assert isinstance(got_task, TaskRecord) and got_task == task
    assert isinstance(got_dlg, DialogueRecord) and got_dlg == dlg
    assert got_dlg.messages[2].tool_calls[0].arguments == {"order_id": "#W0000001"}
    assert (tmp_path / "run" / "tasks.jsonl").read_bytes().count(b"\n") == 1


def test_accepted_filter_and_accepted_dialogues(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        for i in range(4):
            store.append(make_dialogue(i, accepted=i % 2 == 0))
        assert [r.work_key for r in store.accepted_dialogues()] == ["dlg-0", "dlg-2"]
        assert [r.work_key for r in store.iter_records("dialogue", accepted=False)] == ["dlg-1", "dlg-3"]
        with pytest.raises(ValueError, match="unknown record kind"):
            store.done_keys("episode")  # type: ignore[arg-type]


def test_idempotent_by_work_key_in_process_and_after_reopen(tmp_path: Path) -> None:
    root = tmp_path / "run"
    with RunStore.create(root, _manifest()) as store:
        assert store.append(make_task(1)) is True
        assert store.append(make_task(1, accepted=False)) is False  # same key, different content: still a no-op
        assert store.append(make_dialogue(1)) is True  # keys are per kind
        assert store.done_keys("task") == {"task-1"} and store.done_keys("dialogue") == {"dlg-1"}
    with RunStore.open(root) as store:
        assert store.append(make_task(1)) is False
        assert store.append(make_task(2)) is True
        assert store.done_keys("task") == {"task-1", "task-2"}
        assert [r.accepted for r in store.iter_records("task")] == [True, True]
    assert len(_lines(root / "tasks.jsonl")) == 2


def test_has_key_per_kind_and_after_reopen(tmp_path: Path) -> None:
    root = tmp_path / "run"
    with RunStore.create(root, _manifest()) as store:
        assert not store.has_key("task", "task-1")
        store.append(make_task(1))
        store.append(make_dialogue(1))
        assert store.has_key("task", "task-1") and store.has_key("dialogue", "dlg-1")
        assert not store.has_key("dialogue", "task-1") and not store.has_key("task", "task-2")  # keys are per kind
        with pytest.raises(ValueError, match="unknown record kind"):
            store.has_key("episode", "task-1")  # type: ignore[arg-type]
    with RunStore.open(root, read_only=True) as store:
        assert store.has_key("task", "task-1") and not store.has_key("task", "task-2")


def test_aappend_is_idempotent_too(tmp_path: Path) -> None:
    async def go(store: RunStore) -> list[bool]:
        return list(await asyncio.gather(*(store.aappend(make_dialogue(i % 5)) for i in range(20))))

    with RunStore.create(tmp_path, _manifest(), fsync=False) as store:
        assert sum(asyncio.run(go(store))) == 5
        assert store.done_keys("dialogue") == {f"dlg-{i}" for i in range(5)}


def test_manifest_contents_and_resume_times(tmp_path: Path) -> None:
    root = tmp_path / "run"
    RunStore.create(root, _manifest()).close()
    m = json.loads((root / "manifest.json").read_text())
    assert m["config"] == {"repair_rounds": 2, "threshold": 0.5}  # the pydantic config, dumped
    assert m["lms"] == {"assistant": "openai/gpt-4o-mini", "user": "scripted"}
    assert (m["seed"], m["domain"], m["data_dir"]) == (7, "retail", "/data/tau2/retail")
    assert m["eigendspy_version"] and m["run_id"] and m["created_at"] and m["resumed_at"] == []
    assert {"python", "dspy", "pydantic", "datasets"} <= set(m["packages"])
    assert m["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(package_versions()) == set(m["packages"])
    with RunStore.open(root) as store:
        assert len(store.manifest.resumed_at) == 1 and store.manifest.run_id == m["run_id"]
    with RunStore.create(root, _manifest(), resume=True) as store:
        assert len(store.manifest.resumed_at) == 2
    assert len(json.loads((root / "manifest.json").read_text())["resumed_at"]) == 2


def test_manifest_rewrite_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        before = (tmp_path / "manifest.json").read_text()
        store.manifest.notes["evolution"] = [{"repair_rounds": 3}]

        def crash(src: object, dst: object) -> None:
            raise OSError("simulated crash before the rename")

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(OSError, match="simulated"):
            store.write_manifest()
        assert (tmp_path / "manifest.json").read_text() == before  # old file intact
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind
        monkeypatch.undo()
        store.write_manifest()
    assert RunStore.open(tmp_path, read_only=True).manifest.notes == {"evolution": [{"repair_rounds": 3}]}


def test_create_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(RunExistsError, match="not empty") as refused:
        RunStore.create(tmp_path, _manifest())
    assert isinstance(refused.value, FileExistsError) and refused.value.path == tmp_path
    assert "--resume" not in str(refused.value) and "resume=True" not in str(refused.value)  # no front end's words
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        RunStore.create(tmp_path, _manifest(), resume=True)
    died = tmp_path / "died"  # a create that died before writing its manifest leaves only the lock file
    died.mkdir()
    (died / ".lock").touch()
    RunStore.create(died, _manifest()).close()
    assert (died / "manifest.json").exists()


def test_second_writer_is_refused_but_readers_are_not(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        store.append(make_task(0))
        with pytest.raises(RuntimeError, match="another process"):
            RunStore.open(tmp_path)
        reader = RunStore.open(tmp_path, read_only=True)
        assert reader.done_keys("task") == {"task-0"}
        with pytest.raises(PermissionError):
            reader.append(make_task(1))
    RunStore.open(tmp_path).close()  # released on close


def test_shard_rotation(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, _manifest(), max_shard_bytes=4096) as store:
        for i in range(30):
            store.append(make_dialogue(i))
        shards = store.shards("dialogue")
    assert [p.name for p in shards[:3]] == ["dialogues.jsonl", "dialogues-00001.jsonl", "dialogues-00002.jsonl"]
    assert all(p.stat().st_size <= 4096 for p in shards)
    with RunStore.open(tmp_path, max_shard_bytes=4096) as store:  # resume continues in the last shard
        assert store.append(make_dialogue(30))
        assert [r.work_key for r in store.iter_records("dialogue")] == [f"dlg-{i}" for i in range(31)]
        now = store.shards("dialogue")
    assert now[: len(shards)] == shards and len(now) - len(shards) in (0, 1)  # no earlier shard was reopened
    assert b'"dlg-30"' in now[-1].read_bytes() and all(b'"dlg-30"' not in p.read_bytes() for p in now[:-1])


def test_threads_append_without_interleaving(tmp_path: Path) -> None:
    n_threads, per_thread = 10, 50
    with RunStore.create(tmp_path, _manifest()) as store:
        barrier = threading.Barrier(n_threads)

        def work(t: int) -> None:
            barrier.wait()
            for j in range(per_thread):
                store.append(make_dialogue(t * per_thread + j))
                store.append(make_dialogue(t * per_thread + j))  # a duplicate from a racing retry

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        records = list(store.iter_records("dialogue"))
    lines = (tmp_path / "dialogues.jsonl").read_bytes().splitlines()
    assert len(lines) == len(records) == 500
    assert sorted(json.loads(line)["work_key"] for line in lines) == sorted(f"dlg-{i}" for i in range(500))


def test_partial_tail_is_repaired_on_open(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        store.append(make_task(0))
        store.append(make_task(1))
    path = tmp_path / "tasks.jsonl"
    good = path.read_bytes()
    torn = make_task(2).model_dump_json().encode()[:57]  # what a kill mid-write leaves: no newline
    path.write_bytes(good + torn)
    assert len(list(RunStore.open(tmp_path, read_only=True).iter_records("task"))) == 2  # readers skip it
    assert path.read_bytes() == good + torn  # ...and do not touch it
    with caplog.at_level(logging.WARNING, logger="eigendspy.engine.store.store"):
        store = RunStore.open(tmp_path)
    assert "partial last line" in caplog.text and path.read_bytes() == good
    with store:
        assert store.done_keys("task") == {"task-0", "task-1"}
        assert store.append(make_task(2))
    assert [r.work_key for r in RunStore.open(tmp_path, read_only=True).iter_records("task")] == [
        "task-0",
        "task-1",
        "task-2",
    ]
    # A shard holding only a torn line is emptied.
    (tmp_path / "dialogues.jsonl").write_bytes(b'{"kind": "dialogue", "work_')
    with RunStore.open(tmp_path) as store:
        assert (tmp_path / "dialogues.jsonl").read_bytes() == b""
        assert store.append(make_dialogue(0))


def test_typed_readers_filter_like_iter_records(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        for i in range(3):
            store.append(make_task(i, accepted=i != 1))
            store.append(make_dialogue(i, accepted=i != 2))
    with RunStore.open(tmp_path, read_only=True) as store:
        assert [r.work_key for r in store.task_records()] == ["task-0", "task-1", "task-2"]
        assert [r.work_key for r in store.task_records(accepted=False)] == ["task-1"]
        assert all(isinstance(r, TaskRecord) for r in store.task_records())
        assert [r.work_key for r in store.dialogue_records(accepted=True)] == ["dlg-0", "dlg-1"]
        assert list(store.dialogue_records(accepted=True)) == list(store.accepted_dialogues())
        assert list(store.dialogue_records()) == list(store.iter_records("dialogue"))


def test_rewritten_record_first_one_wins_across_shards(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A work key written twice (e.g. by a writer that bypassed the store) is read once: its first line, in
    shard order (``dialogues.jsonl`` before ``dialogues-00001.jsonl``, although the name sorts after)."""
    with RunStore.create(tmp_path, _manifest()) as store:
        store.append(make_dialogue(0))
        store.append(make_dialogue(1))
    rewritten = make_dialogue(0, accepted=False, reasons=("rewritten",))
    (tmp_path / "dialogues-00001.jsonl").write_text(rewritten.model_dump_json() + "\n")
    with caplog.at_level(logging.WARNING, logger="eigendspy.engine.store.store"):
        store = RunStore.open(tmp_path, read_only=True)
    assert "repeats work_key 'dlg-0'" in caplog.text
    records = list(store.dialogue_records())
    assert [(r.work_key, r.accepted) for r in records] == [("dlg-0", True), ("dlg-1", True)]
    assert store.done_keys("dialogue") == {"dlg-0", "dlg-1"} and store.corrupt_lines == 0


def test_summary_on_planted_records(tmp_path: Path) -> None:
    with RunStore.create(tmp_path, _manifest()) as store:
        for i in range(3):
            store.append(make_task(i, plan_id="pA"))
        for i in (3, 4):
            store.append(make_task(i, accepted=False, reasons=("gold action errored",), plan_id="pB", blame="task"))
        store.append(make_dialogue(0, plan_id="pA"))
        store.append(
            make_dialogue(1, plan_id="pA", accepted=False, reasons=("checker failed", "db mismatch"), blame="assistant")
        )
        s = store.summary(top_n=5)
        path = store.write_summary()
    t, d = s.kinds["task"], s.kinds["dialogue"]
    assert (t.total, t.accepted, t.rejected) == (5, 3, 2)
    assert t.stages == {"accept": 3, "validate_task": 2}
    assert [(r.reason, r.count) for r in t.top_reasons] == [("gold action errored", 2)]
    assert t.blame == {"task": 2}
    assert t.usage.prompt_tokens == {"generator": sum(100 + i for i in range(5))}
    assert (d.total, d.accepted, d.rejected, d.blame) == (2, 1, 1, {"assistant": 1})
    assert {(r.reason, r.count) for r in d.top_reasons} == {("checker failed", 1), ("db mismatch", 1)}
    assert s.usage.calls == {"generator": 5, "assistant": 4, "user": 2}
    assert s.usage.prompt_tokens["assistant"] == 1000
    assert s.plans["pA"].model_dump() == {
        "tasks": 3,
        "tasks_accepted": 3,
        "dialogues": 2,
        "dialogues_accepted": 1,
        "dialogue_yield": 0.5,
    }
    assert s.plans["pB"].tasks_accepted == 0 and s.plans["pB"].dialogue_yield == 0.0
    assert json.loads(path.read_text())["kinds"]["task"]["top_reasons"] == [
        {"reason": "gold action errored", "count": 2}
    ]


def _visible_lines(root: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in root.glob("*.jsonl"))


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    root, n = tmp_path / "run", 200
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(root), str(n), "0.004"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not root.exists() or _visible_lines(root) < 40):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.01)
    with pytest.raises(RuntimeError, match="another process"):
        RunStore.open(root)  # the live writer holds the run lock
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    before = _visible_lines(root)
    assert 40 <= before < 2 * n, "the writer must be killed mid-way"
    # Also plant the torn tail a kill can leave mid-write, in the shard the writer was appending to.
    last = RunStore.open(root, read_only=True).shards("dialogue")[-1]
    with open(last, "ab") as f:
        f.write(make_dialogue(n - 1).model_dump_json().encode()[:100])

    done = subprocess.run(
        [sys.executable, str(WRITER), str(root), str(n), "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "partial last line" in done.stderr
    assert done.stdout.strip() == f"skipped={before} appended={2 * n - before}"

    store = RunStore.open(root, read_only=True)
    assert len(store.shards("dialogue")) > 1  # the run crossed shard boundaries
    for kind, prefix in (("task", "task"), ("dialogue", "dlg")):
        raw = [json.loads(line)["work_key"] for p in store.shards(kind) for line in p.read_bytes().splitlines()]
        assert sorted(raw) == sorted(f"{prefix}-{i}" for i in range(n))  # each exactly once
        assert len(list(store.iter_records(kind))) == n  # and all parse
    assert store.manifest.resumed_at and store.corrupt_lines == 0
