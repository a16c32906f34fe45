"""Compiled-program versions: a content hash per program, and atomic, idempotent saves by hash.

Why content hashes and not counters (``save_compiled``'s ``<role>.v{n}.json``): a loop round that is
killed and resumed recompiles a role and must land on the *same* file, and a run manifest must name
the exact program that produced its data — two runs started from equal programs name equal hashes,
whatever folder the programs were copied to.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import dspy

from eigendspy.engine.config import compiled_files
from eigendspy.engine.store.files import atomic_write_text
from eigendspy.optimizers.report import artifact_module, without_lms

__all__ = ["compiled_versions", "program_state", "save_versioned", "state_hash"]

HASH_CHARS = 12


def _canonical(state: dict[str, Any]) -> str:
    """The state without DSPy's ``metadata`` (library versions), as sorted JSON."""
    return json.dumps({k: v for k, v in state.items() if k != "metadata"}, sort_keys=True, default=str)


def state_hash(state: dict[str, Any]) -> str:
    """The first `HASH_CHARS` hex digits of the sha256 of a saved program state (metadata excluded)."""
    return hashlib.sha256(_canonical(state).encode()).hexdigest()[:HASH_CHARS]


def program_state(program: dspy.Module) -> dict[str, Any]:
    """What ``save_compiled`` would write for ``program`` (its evolved role, no LMs), as a dict."""
    module = without_lms(artifact_module(program))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        module.save(str(path))
        return json.loads(path.read_text())


def save_versioned(program: dspy.Module, folder: str | Path, role: str) -> tuple[str, Path]:
    """Write ``<role>.<hash>.json`` and ``<role>.json`` atomically into ``folder``; returns (hash, latest).

    Idempotent: saving an equal program again rewrites the same two files with the same bytes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = program_state(program)
    digest = state_hash(state)
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    atomic_write_text(folder / f"{role}.{digest}.json", text)
    atomic_write_text(folder / f"{role}.json", text)
    return digest, folder / f"{role}.json"


def compiled_versions(compiled_dir: str | Path) -> dict[str, str]:
    """Role -> content hash of every ``<role>.json`` in ``compiled_dir`` (what `Roles.load_compiled` loads).

    Raises:
        FileNotFoundError: ``compiled_dir`` holds no compiled role.
    """
    return {role: state_hash(json.loads(path.read_text())) for role, path in compiled_files(compiled_dir).items()}
