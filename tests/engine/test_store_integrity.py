"""Run store tamper evidence: checksums, bad lines reported by file and line, their work redone on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eigendspy.core.records import DialogueRecord
from eigendspy.engine.store.integrity import CHECKSUM_FIELD, BadLine, checksum, decode_record
from eigendspy.engine.store.resume_check import manifest_differences
from eigendspy.engine.store.store import RunManifest, RunStore
from tests.engine.store_writer_script import make_dialogue, make_task


def _run(root: Path, n: int = 3) -> Path:
    with RunStore.create(root, RunManifest(domain="mock", seed=1)) as store:
        for i in range(n):
            store.append(make_task(i))
            store.append(make_dialogue(i))
    return root


def _edit_line(path: Path, index: int, old: bytes, new: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new, 1)
    path.write_bytes(b"".join(lines))


def _resume_and_redo(root: Path) -> RunStore:
    """What a resumed engine does: redo every work item whose key is not done."""
    store = RunStore.open(root)
    for i in range(3):
        if not store.has_key("task", f"task-{i}"):
            store.append(make_task(i))
        if not store.has_key("dialogue", f"dlg-{i}"):
            store.append(make_dialogue(i))
    return store


def test_every_line_carries_the_checksum_of_its_content(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    for line in (root / "dialogues.jsonl").read_bytes().splitlines():
        data = json.loads(line)
        assert data[CHECKSUM_FIELD] == checksum(data)
    assert list(RunStore.open(root, read_only=True).dialogue_records()) == [make_dialogue(i) for i in range(3)]


def test_schema_valid_reward_flip_is_reported_and_redone(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    path = root / "dialogues.jsonl"
    _edit_line(path, 1, b'"reward": 1.0', b'"reward": 0.0')  # still valid JSON and a valid DialogueRecord
    store = RunStore.open(root, read_only=True)
    assert store.corruption_report() == [f"{path} line 2: checksum mismatch (content altered)"]
    assert store.done_keys("dialogue") == {"dlg-0", "dlg-2"}  # not counted as done
    assert [r.work_key for r in store.dialogue_records()] == ["dlg-0", "dlg-2"]  # never read altered
    with _resume_and_redo(root) as store:
        pass
    store = RunStore.open(root, read_only=True)
    records = list(store.dialogue_records())
    assert sorted(r.work_key for r in records) == ["dlg-0", "dlg-1", "dlg-2"]  # redone once, not duplicated
    assert all(r.reward == 1.0 for r in records) and store.corrupt_lines == 1  # the bad line stays, reported


def test_stage_flip_in_a_task_is_caught(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    _edit_line(root / "tasks.jsonl", 0, b'"stage": "accept"', b'"stage": "check"')  # another valid stage
    store = RunStore.open(root, read_only=True)
    assert store.corrupt_lines == 1 and "task-0" not in store.done_keys("task")
    assert store.summary().corrupt == store.corruption_report()


def test_lines_without_checksum_still_load_but_need_a_valid_schema(tmp_path: Path) -> None:
    root = tmp_path / "run"
    RunStore.create(root, RunManifest()).close()
    old = [make_dialogue(i).model_dump_json() for i in range(3)]  # the format before checksums
    old[2] = old[2].replace('"stage":"accept"', '"stage":"acxept"')
    (root / "dialogues.jsonl").write_text("\n".join(old) + "\n")
    store = RunStore.open(root, read_only=True)
    assert store.done_keys("dialogue") == {"dlg-0", "dlg-1"}
    assert store.corrupt_lines == 1 and "line 3: invalid DialogueRecord: stage" in store.corruption_report()[0]


def test_a_non_utf8_byte_is_reported_not_raised(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    path = root / "dialogues.jsonl"
    _edit_line(path, 0, b'"dlg-0"', b'"dlg-\xff"')
    store = RunStore.open(root, read_only=True)
    assert store.corruption_report()[0].startswith(f"{path} line 1: not UTF-8")
    assert [r.work_key for r in store.dialogue_records()] == ["dlg-1", "dlg-2"]
    assert store.summary().kinds["dialogue"].total == 2


def test_decode_record_names_each_failure() -> None:
    line = make_dialogue(0).model_dump_json().encode()
    assert decode_record(line, DialogueRecord) == make_dialogue(0)
    for raw, reason in [(b"\xfe{}", "not UTF-8"), (b"{nope", "not JSON"), (b"[1]", "not a JSON object"),
                        (b'{"kind": "dialogue"}', "invalid DialogueRecord")]:
        with pytest.raises(BadLine, match=reason):
            decode_record(raw, DialogueRecord)


def test_missing_manifest_is_refused_and_the_records_kept(tmp_path: Path) -> None:
    root = _run(tmp_path / "run")
    (root / "manifest.json").unlink()
    before = (root / "dialogues.jsonl").read_bytes()
    for attempt in (lambda: RunStore.open(root, read_only=True),
                    lambda: RunStore.create(root, RunManifest(), resume=True)):
        with pytest.raises(FileNotFoundError, match="not a run directory"):
            attempt()
    with pytest.raises(FileExistsError):
        RunStore.create(root, RunManifest())
    assert (root / "dialogues.jsonl").read_bytes() == before and not (root / "manifest.json").exists()


def test_manifest_differences_name_each_setting() -> None:
    stored = RunManifest(domain="mock", seed=0, lms={"user": "a", "assistant": "b"},
                         config={"seed": 0, "concurrency": 4}, notes={"n": 8})
    same = stored.model_copy(update={"config": {"seed": 0, "concurrency": 32}, "run_id": "other"})
    assert manifest_differences(stored, same) == []  # concurrency changes speed, not what is made
    other = RunManifest(domain="retail", seed=1, lms={"user": "a", "assistant": "c"}, config={"seed": 1},
                        notes={"n": 9})
    assert manifest_differences(stored, other) == [
        "domain: 'mock' -> 'retail'", "seed: 0 -> 1", "n: 8 -> 9", "lm[assistant]: 'b' -> 'c'", "config.seed: 0 -> 1",
    ]
