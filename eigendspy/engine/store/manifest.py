"""A run's ``manifest.json``: what produced the run, read back strictly, and the store's refusals.

Why its own module: the manifest is the one file every reader of a run needs first (resume, export,
inspect), so a damaged one must fail the same way everywhere — as `ManifestError` (or
`ManifestMissingError`), naming the file and what is wrong with it — instead of as whichever decoding
error the reader happened to hit. `RunExistsError` is the refusal to start a run over another. Each
carries its path as an attribute, so a front end (the CLI) can word the fix in its own terms
(``--resume``, ``--out``) without parsing the message.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eigendspy.engine.store.files import eigendspy_version, package_versions

MANIFEST = "manifest.json"
#: Files only a run writes: a directory holding one of these but no manifest is a damaged run.
_RUN_FILES = ("tasks*.jsonl", "dialogues*.jsonl", "summary.json", "plans")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunExistsError(FileExistsError):
    """``path`` already holds a run (or other files) and the caller did not ask to continue it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path} is not empty; continue the run stored there (resume) or use another directory")

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (Ray) with its one argument, not OSError's
        return type(self), (self.path,)


class ManifestError(ValueError):
    """A run's ``manifest.json`` is missing, unreadable, not JSON, or not a `RunManifest`.

    ``path`` is the manifest file and ``reason`` what is wrong with it, so callers can add their own fix.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}; restore it from a copy, or start the run again in another directory")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.reason)


class ManifestMissingError(FileNotFoundError):
    """``root`` has no ``manifest.json``: not a run directory, or (``has_records``) a run that lost it."""

    def __init__(self, root: str | Path, has_records: bool) -> None:
        self.root = Path(root)
        self.path = self.root / MANIFEST
        self.has_records = has_records
        damaged = "; it holds a run's records: restore the manifest from a copy, or start the run again elsewhere"
        super().__init__(
            f"{self.path} not found: {self.root} is not a run directory" + (damaged if has_records else "")
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.root, self.has_records)


class RunManifest(BaseModel):
    """What produced a run: enough to reproduce it and to tell two runs apart.

    Versions default to what is installed now; ``config`` accepts the engine's pydantic config
    and stores its JSON dump. ``resumed_at`` grows each time the run is reopened; ``compiled`` names
    the compiled programs the roles were loaded from (``synth --compiled``, each evolve-loop round);
    ``notes`` is a free dict for later changes (e.g. workflow evolution adjusting engine settings).
    """

    model_config = ConfigDict(extra="allow")

    run_id: str = Field(default_factory=lambda: f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}")
    created_at: str = Field(default_factory=utc_now)
    eigendspy_version: str = Field(default_factory=eigendspy_version)
    packages: dict[str, str] = Field(default_factory=package_versions)
    config: dict[str, Any] = Field(default_factory=dict)
    lms: dict[str, str] = Field(default_factory=dict, description="LM id per role, e.g. {'assistant': '...'}")
    seed: int | None = None
    domain: str | None = None
    data_dir: str | None = None
    resumed_at: list[str] = Field(default_factory=list)
    compiled: dict[str, str] = Field(default_factory=dict, description="Role -> content hash of the compiled "
                                     "program that role started from (empty: every role ran uncompiled)")
    notes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config", mode="before")
    @classmethod
    def _dump_config(cls, value: Any) -> Any:
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def holds_run_files(root: Path) -> bool:
    """Whether ``root`` holds anything but a lone ``.lock`` (what a create that died before its manifest leaves)."""
    return root.is_dir() and any(p.name != ".lock" for p in root.iterdir())


def read_manifest(root: str | Path) -> RunManifest:
    """The manifest of the run in ``root``, checked byte by byte down to its schema.

    Raises:
        ManifestMissingError: ``root`` has no manifest (a `FileNotFoundError`; ``has_records`` tells a run
            that lost its manifest from a directory that never held a run).
        ManifestError: the manifest cannot be read, decoded or validated.
    """
    root = Path(root)
    path = root / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        records = root.is_dir() and any(next(root.glob(pattern), None) is not None for pattern in _RUN_FILES)
        raise ManifestMissingError(root, records) from None
    except OSError as exc:
        raise ManifestError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(path, f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ManifestError(path, "nested too deeply to be a run manifest") from None
    try:
        return RunManifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ManifestError(path, f"not a run manifest (field {loc!r}: {first['msg']})") from None
