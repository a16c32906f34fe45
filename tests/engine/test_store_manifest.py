"""A damaged manifest is one `ManifestError` naming the file; a failed start leaves no run directory behind."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from eigendspy.engine.store import ManifestError, ManifestMissingError, RunExistsError, read_manifest
from eigendspy.engine.store.discard import discard_if_unused, has_records
from eigendspy.engine.store.store import RunManifest, RunStore
from tests.engine.store_writer_script import make_task


def _run(root: Path, records: int = 0) -> Path:
    with RunStore.create(root, RunManifest(domain="mock", seed=1), fsync=False) as store:
        for i in range(records):
            store.append(make_task(i))
    return root


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"run_id": "r", "config": {', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
        (b'{"run_id": 5}', "field 'run_id'"),
        (b"[1, 2]", "not a run manifest"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_damaged_manifest_is_one_error_naming_the_file(tmp_path, content, reason):
    root = _run(tmp_path / "run", records=2)
    (root / "manifest.json").write_bytes(content)
    for attempt in (
        lambda: read_manifest(root),
        lambda: RunStore.open(root, read_only=True),
        lambda: RunStore.open(root),
        lambda: RunStore.create(root, RunManifest(), resume=True),
    ):
        with pytest.raises(ManifestError) as caught:
            attempt()
        assert caught.value.path == root / "manifest.json" and reason in caught.value.reason
        assert str(caught.value).startswith(f"{root / 'manifest.json'}: ") and "restore" in str(caught.value)
    assert (root / "manifest.json").read_bytes() == content  # nothing is "repaired" behind the user's back


def test_missing_manifest_says_whether_records_are_there(tmp_path):
    run = _run(tmp_path / "run", records=1)
    (run / "manifest.json").unlink()
    with pytest.raises(ManifestMissingError, match="not a run directory.*records") as caught:
        read_manifest(run)
    assert caught.value.has_records and isinstance(caught.value, FileNotFoundError)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(ManifestMissingError) as caught:
        read_manifest(tmp_path / "other")
    assert not caught.value.has_records and "records" not in str(caught.value)


def test_errors_survive_pickling_with_their_attributes(tmp_path):  # Ray ships exceptions between processes
    for exc in (
        RunExistsError(tmp_path),
        ManifestError(tmp_path / "m.json", "bad"),
        ManifestMissingError(tmp_path, True),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc) and back.path == exc.path


def test_discard_removes_a_run_without_records(tmp_path):
    fresh = _run(tmp_path / "fresh")
    (fresh / "plans").mkdir()
    (fresh / "plans" / "r0_s0.json").write_text("{}")
    assert not has_records(fresh) and discard_if_unused(fresh, existed=False)
    assert not fresh.exists()

    given = tmp_path / "given"  # the user made the (empty) directory: it stays, emptied
    given.mkdir()
    _run(given)
    assert discard_if_unused(given, existed=True) and given.is_dir() and not list(given.iterdir())
    RunStore.create(given, RunManifest()).close()  # and the same command can start again


def test_discard_keeps_a_run_with_records(tmp_path):
    run = _run(tmp_path / "run", records=1)
    assert has_records(run) and not discard_if_unused(run, existed=False)
    assert (run / "manifest.json").exists() and (run / "tasks.jsonl").stat().st_size > 0
    assert not discard_if_unused(tmp_path / "absent", existed=False)
