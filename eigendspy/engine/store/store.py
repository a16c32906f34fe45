"""The data engine's run directory: a manifest plus append-only JSONL shards, safe to ``kill -9``.

A synthesis run is long and costs money, so it must be auditable (every task and dialogue is kept,
accepted or rejected, with reasons, blame and token usage) and resumable (a killed run continues
where it stopped, never losing an accepted record and never storing one twice). Layout::

    <root>/manifest.json       RunManifest: config, package versions, LM ids, seed, resume times
    <root>/tasks.jsonl         TaskRecord lines; rotated to tasks-00001.jsonl, ... past max_shard_bytes
    <root>/dialogues.jsonl     DialogueRecord lines, rotated the same way
    <root>/summary.json        RunSummary, written on request
    <root>/.lock               flock held by the one process writing the run

Example:
    >>> store = RunStore.create("runs/r1", RunManifest(config=cfg, lms={"user": "openai/gpt-4o-mini"}))
    >>> done = store.done_keys("dialogue")        # on resume: skip work already stored
    >>> store.append(record)                      # True if stored, False if its work_key was stored before
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from eigendspy.core.records import DialogueRecord, TaskRecord
from eigendspy.engine.store.files import atomic_write_text, eigendspy_version, fsync_dir, package_versions  # noqa: F401 (re-export)
from eigendspy.engine.store.integrity import BadLine, CorruptLine, decode_record, encode_record
from eigendspy.engine.store.manifest import (  # noqa: F401 (re-export)
    MANIFEST,
    ManifestError,
    ManifestMissingError,
    RunExistsError,
    RunManifest,
    holds_run_files,
    read_manifest,
    utc_now,
)
from eigendspy.engine.store.summary import KindSummary, PlanYield, ReasonCount, RunSummary, summarize  # noqa: F401 (re-export)

try:  # POSIX only; elsewhere a run dir is simply not protected against a second writer.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

RecordKind = Literal["task", "dialogue"]
Record = TaskRecord | DialogueRecord
KINDS: tuple[RecordKind, ...] = ("task", "dialogue")
_MODELS: dict[str, type[TaskRecord] | type[DialogueRecord]] = {"task": TaskRecord, "dialogue": DialogueRecord}
_STEMS = {"task": "tasks", "dialogue": "dialogues"}
SUMMARY = "summary.json"
DEFAULT_MAX_SHARD_BYTES = 64 * 1024 * 1024


class RunStore:
    """Append-only, resumable store of one run's records. Create with ``create`` or ``open``.

    Each record is one JSON line. ``append`` serializes it, then under a lock makes a single
    ``os.write`` of the whole line on an ``O_APPEND`` descriptor followed by ``os.fsync``. Why:
    a buffered file object may split a long line over several ``write`` calls and may still hold
    an acknowledged record in user space when ``kill -9`` arrives; one ``write`` puts the line
    in the kernel in one call, so after a kill it is either fully there or a truncated tail with
    no newline, which ``open`` cuts away. ``fsync`` extends the same promise to a power loss.
    A record counts as stored only once ``append`` returned True; work interrupted before that
    is redone on resume, and work stored before the kill is skipped through ``done_keys``.

    Records are idempotent per (kind, work_key): appending a stored key is a no-op returning
    False. An exclusive ``flock`` on ``.lock`` keeps a second process from writing the same run
    (the kernel drops it when the holder dies, so a killed run can be reopened at once).
    """

    def __init__(
        self,
        root: str | Path,
        manifest: RunManifest,
        *,
        max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        fsync: bool = True,
        read_only: bool = False,
    ) -> None:
        if max_shard_bytes <= 0:
            raise ValueError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        self.root = Path(root)
        self.manifest = manifest
        self.max_shard_bytes = max_shard_bytes
        self.fsync = fsync
        self.read_only = read_only
        self.corrupt: list[CorruptLine] = []
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fds: dict[str, int] = {}
        self._keys: dict[str, set[str]] = {k: set() for k in KINDS}
        self._shard: dict[str, int] = {}
        self._size: dict[str, int] = {}
        if not read_only:
            self._acquire_process_lock()
        try:
            for kind in KINDS:
                self._load(kind)
        except BaseException:
            self.close()
            raise

    @classmethod
    def create(cls, root: str | Path, manifest: RunManifest, *, resume: bool = False, **kwargs: Any) -> RunStore:
        """Start a run in ``root`` (created if needed), or with ``resume=True`` continue the one there.

        Refuses a non-empty directory unless resuming (`RunExistsError`), so two runs never mix
        their records. On resume the stored manifest is kept (it describes how the records were
        made); a differing config is logged so a changed setting does not go unnoticed.
        """
        root = Path(root)
        if holds_run_files(root):  # a lone lock does not count: a create that died before its manifest
            if not resume:
                raise RunExistsError(root)
            store = cls.open(root, **kwargs)
            if store.manifest.config != manifest.config:
                old, new = store.manifest.config, manifest.config
                changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
                logger.warning("resuming %s with a different config (keys: %s); keeping the stored one", root, changed)
            return store
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, manifest, **kwargs)._with_manifest_written()

    @classmethod
    def open(cls, root: str | Path, *, read_only: bool = False, **kwargs: Any) -> RunStore:
        """Reopen a run: load its manifest, repair torn tails of shards, and record the resume time.

        With ``read_only=True`` (inspection, export while a run is going) nothing is written,
        no lock is taken, and a torn tail is only skipped. A damaged or missing manifest raises
        `ManifestError` (see `read_manifest`), never a bare decoding error.
        """
        root = Path(root)
        store = cls(root, read_manifest(root), read_only=read_only, **kwargs)
        if not read_only:
            store.manifest.resumed_at.append(utc_now())
            store._with_manifest_written()
        return store

    def write_manifest(self) -> None:
        """Atomically rewrite ``manifest.json`` from ``self.manifest`` (e.g. after changing ``notes``)."""
        self._check_writable()
        with self._lock:
            atomic_write_text(self.root / MANIFEST, self.manifest.model_dump_json(indent=2) + "\n")

    def _with_manifest_written(self) -> RunStore:
        try:
            self.write_manifest()
        except BaseException:
            self.close()  # release the run lock: a failed create/open must not block the next try
            raise
        return self

    def close(self) -> None:
        """Close shard descriptors and release the run lock (idempotent)."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
                self._lock_fd = None

    @property
    def corrupt_lines(self) -> int:
        """How many stored lines failed UTF-8, JSON, checksum or schema when the run was opened."""
        return len(self.corrupt)

    def corruption_report(self) -> list[str]:
        """One line per bad stored line (file, line number, reason): what readers skipped."""
        return [str(c) for c in self.corrupt]

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, record: Record) -> bool:
        """Store ``record`` durably; False (and nothing written) if its (kind, work_key) is already stored."""
        self._check_writable()
        kind = record.kind
        line = encode_record(record)  # serialize and checksum outside the lock
        with self._lock:
            if record.work_key in self._keys[kind]:
                return False
            fd = self._fd_for(kind, len(line))
            start = self._size[kind]
            try:
                view = memoryview(line)
                while view:  # one call in practice; a short write (disk full) is finished or undone
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, start)  # leave no partial line behind a failed append
                raise
            self._size[kind] = start + len(line)
            self._keys[kind].add(record.work_key)
        return True

    async def aappend(self, record: Record) -> bool:
        """``append`` from async code: the write and fsync run in a worker thread, not on the event loop."""
        return await asyncio.to_thread(self.append, record)

    def done_keys(self, kind: RecordKind) -> set[str]:
        """Work keys of all stored records of ``kind`` (a copy): what a resumed run must skip; see ``has_key``."""
        _check_kind(kind)
        with self._lock:
            return set(self._keys[kind])

    def has_key(self, kind: RecordKind, work_key: str) -> bool:
        """Whether a record of ``kind`` with ``work_key`` is stored: ``done_keys`` without copying the set."""
        _check_kind(kind)
        with self._lock:
            return work_key in self._keys[kind]

    def iter_records(self, kind: RecordKind, accepted: bool | None = None) -> Iterator[Record]:
        """Parse stored records of ``kind`` in write order, optionally only accepted (True) or rejected (False).

        A torn tail (a line being written, or left by a kill in read-only mode) and bad lines (not
        UTF-8, not JSON, checksum or schema failing: see ``corrupt``) are skipped; the first valid
        record of a work key wins, so readers never see duplicates.
        """
        _check_kind(kind)
        model, seen = _MODELS[kind], set()
        for path in self.shards(kind):
            with open(path, "rb") as f:
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    try:
                        record = decode_record(line, model)
                    except BadLine:
                        continue  # counted and logged when the store was opened
                    if record.work_key in seen:
                        continue
                    seen.add(record.work_key)
                    if accepted is None or record.accepted == accepted:
                        yield record

    def task_records(self, accepted: bool | None = None) -> Iterator[TaskRecord]:
        """``iter_records("task", accepted)`` typed as `TaskRecord`, so readers such as export need no casts."""
        yield from self.iter_records("task", accepted)  # type: ignore[misc]

    def dialogue_records(self, accepted: bool | None = None) -> Iterator[DialogueRecord]:
        """``iter_records("dialogue", accepted)`` typed as `DialogueRecord` (export reads the run through it)."""
        yield from self.iter_records("dialogue", accepted)  # type: ignore[misc]

    def accepted_dialogues(self) -> Iterator[DialogueRecord]:
        """The dialogues the engine kept: what export turns into training data."""
        return self.dialogue_records(accepted=True)

    def shards(self, kind: RecordKind) -> list[Path]:
        """Shard files of ``kind`` in write order."""
        _check_kind(kind)
        pattern = re.compile(rf"^{_STEMS[kind]}(?:-(\d{{5}}))?\.jsonl$")
        found = [(int(m.group(1) or 0), p) for p in self.root.iterdir() if (m := pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    def summary(self, top_n: int = 20) -> RunSummary:
        """Counts per kind and stage, top rejection reasons, blame, usage per role and yield per plan."""
        records = {kind: self.iter_records(kind) for kind in KINDS}
        return summarize(records, run_id=self.manifest.run_id, top_n=top_n, corrupt_lines=self.corrupt_lines,
                         corrupt=self.corruption_report())

    def write_summary(self, top_n: int = 20) -> Path:
        """Atomically write ``summary.json`` and return its path."""
        path = self.root / SUMMARY
        atomic_write_text(path, self.summary(top_n).model_dump_json(indent=2) + "\n")
        return path

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.root} was opened read-only")

    def _acquire_process_lock(self) -> None:
        self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RuntimeError(f"{self.root} is being written by another process (or another open RunStore)") from None

    def _load(self, kind: str) -> None:
        """Index the work keys stored so far and the shard to continue; cut a torn tail unless read-only.

        A trailing partial line (no final newline) is the only damage a killed append can leave:
        it was never acknowledged, so removing it loses nothing and lets the next line start clean.
        Every other line is fully checked (`decode_record`); a bad one is reported in ``corrupt``
        and its work key is not counted as done, so a resumed run redoes that work.
        """
        paths = self.shards(kind)  # type: ignore[arg-type]
        model = _MODELS[kind]
        for path in paths:
            good = torn = 0
            with open(path, "rb") as f:
                for n, line in enumerate(f, 1):
                    if not line.endswith(b"\n"):
                        torn = len(line)
                        break
                    good += len(line)
                    try:
                        key = decode_record(line, model).work_key
                    except BadLine as exc:
                        self.corrupt.append(CorruptLine(path, n, exc.reason))
                        logger.warning("%s line %d is not a valid record (%s); skipped", path, n, exc.reason)
                        continue
                    if key in self._keys[kind]:
                        logger.warning("%s line %d repeats work_key %r; the first one wins", path, n, key)
                    self._keys[kind].add(key)
            if torn and not self.read_only:
                with open(path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
                logger.warning("%s: removed a partial last line (%d bytes) left by an interrupted write", path, torn)
        self._shard[kind] = len(paths) - 1 if paths else 0
        last = self._shard_path(kind, self._shard[kind])
        self._size[kind] = last.stat().st_size if last.exists() else 0

    def _shard_path(self, kind: str, index: int) -> Path:
        return self.root / (f"{_STEMS[kind]}.jsonl" if index == 0 else f"{_STEMS[kind]}-{index:05d}.jsonl")

    def _fd_for(self, kind: str, nbytes: int) -> int:
        """The descriptor to append ``nbytes`` to, rotating to a new shard past ``max_shard_bytes``."""
        if self._size[kind] and self._size[kind] + nbytes > self.max_shard_bytes:
            if kind in self._fds:
                os.close(self._fds.pop(kind))
            self._shard[kind] += 1
            self._size[kind] = 0
        if kind not in self._fds:
            path = self._shard_path(kind, self._shard[kind])
            created = not path.exists()
            self._fds[kind] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                fsync_dir(self.root)  # make the new file's directory entry durable too
        return self._fds[kind]


def _check_kind(kind: str) -> None:
    if kind not in _MODELS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {KINDS}")
