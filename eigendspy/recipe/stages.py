"""Resumable stages: a stage whose outputs are complete under the same settings is skipped on a re-run.

Why markers keyed by a hash, and why the hash includes upstream run ids: the recipe runs for an hour on a
CPU (longer at GPU scale) and is re-run after every interruption or change. A stage is *done* when its
folder holds ``stage.json`` whose key — a hash of the settings the stage reads and of the ``run_id`` of
every stage it consumes — equals the key computed now. Changing a stage's settings changes its key, so it
reruns; its new ``run_id`` changes the keys of everything downstream, so they rerun too, while stages
that do not consume it keep theirs and are skipped.

An interrupted stage leaves ``started.json`` (its key) and partial outputs: rerun with the same key, the
stage gets its folder back as it was, so it can resume (SFT and GRPO from their checkpoints, the data
engine from its run store); with another key the folder is cleared first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MARKER = "stage.json"
STARTED = "started.json"


class StageMarker(BaseModel):
    """What a finished stage wrote: its key, a fresh id, how long it ran and its (JSON) result."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    key: str
    run_id: str
    seconds: float
    result: dict[str, Any] = Field(default_factory=dict)
    skipped: bool = Field(False, description="Set on the copy returned for a skipped stage (never stored)")


def stage_key(stage: str, settings: dict[str, Any], upstream: Sequence[StageMarker] = ()) -> str:
    """The hash a stage is keyed by: its name, its settings and its inputs' run ids."""
    payload = {"stage": stage, "settings": settings, "upstream": {m.stage: m.run_id for m in upstream}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StageStore:
    """The stage folders under one recipe output folder (``<root>/<stage>/``).

    Args:
        root: The recipe's output folder.
        progress: Called with ``(stage, event)``, ``event`` one of ``"skip"``, ``"start"``, ``"done"``.
    """

    def __init__(self, root: str | Path, progress: Callable[[str, str], None] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.progress = progress

    def folder(self, stage: str) -> Path:
        return self.root / stage

    def marker(self, stage: str) -> StageMarker | None:
        """The stored marker of ``stage`` (None when it never finished or the file is unreadable)."""
        path = self.folder(stage) / MARKER
        try:
            return StageMarker.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None

    def run(self, stage: str, settings: dict[str, Any], upstream: Sequence[StageMarker],
            fn: Callable[[Path], dict[str, Any]]) -> StageMarker:
        """Run ``fn(folder) -> result`` unless ``stage`` is done under the same key; return its marker."""
        key = stage_key(stage, settings, upstream)
        done = self.marker(stage)
        if done is not None and done.key == key:
            self._tell(stage, "skip")
            return done.model_copy(update={"skipped": True})
        folder = self.folder(stage)
        started = folder / STARTED
        same_attempt = started.is_file() and _read_key(started) == key and done is None
        if folder.exists() and not same_attempt:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"key": key, "settings": settings}, indent=2, default=str))
        self._tell(stage, "start")
        t0 = time.perf_counter()
        result = fn(folder)
        marker = StageMarker(stage=stage, key=key, run_id=uuid.uuid4().hex, seconds=time.perf_counter() - t0,
                             result=result)
        tmp = folder / f".{MARKER}.tmp"
        tmp.write_text(marker.model_dump_json(indent=2))
        tmp.replace(folder / MARKER)  # atomic: a marker is whole or absent
        self._tell(stage, "done")
        return marker

    def _tell(self, stage: str, event: str) -> None:
        if self.progress is not None:
            self.progress(stage, event)


def _read_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("key")
    except (OSError, ValueError):
        return None
