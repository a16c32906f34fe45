"""Remove a run directory that a failed start left without a single record.

Why: ``RunStore.create`` refuses a non-empty directory so two runs never mix. A run that dies before
it stores anything (its planner's LM unreachable, a key rejected, Ctrl-C while planning) would
otherwise leave a manifest behind, and the very same command, rerun once the cause is fixed, would
be refused with "not empty". A directory holding a record is never touched: records cost LM calls,
and ``--resume`` continues from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: Shard names of both record kinds (``tasks.jsonl``, ``dialogues-00001.jsonl``, ...).
_SHARDS = ("tasks*.jsonl", "dialogues*.jsonl")


def has_records(root: Path) -> bool:
    """Whether any shard of ``root`` holds a byte (a stored record, or a torn or corrupt one)."""
    return any(p.is_file() and p.stat().st_size > 0 for pattern in _SHARDS for p in root.glob(pattern))


def discard_if_unused(root: str | Path, *, existed: bool) -> bool:
    """Remove what a run started in ``root`` wrote when no record was stored; True if it did.

    ``existed`` says whether ``root`` was there before this run was created (then only its contents
    go: ``create`` accepts only an empty directory, so they are all this run's). Call it after the
    store is closed, from the process that created the run.
    """
    root = Path(root)
    if not root.is_dir() or has_records(root):
        return False
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return True
    for path in root.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return True
