"""File helpers of a run directory: crash-safe writes and the package versions a manifest records."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import threading
from pathlib import Path

_VERSIONED = ("dspy", "pydantic", "datasets", "litellm", "trl", "transformers", "torch", "peft")


def eigendspy_version() -> str:
    # Read lazily from the imported package (not at import time: eigendspy/__init__ may import this module).
    version = getattr(sys.modules.get("eigendspy"), "__version__", None)
    if version:
        return str(version)
    try:
        return importlib.metadata.version("eigendspy")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that shape a run, from installed metadata.

    Uses ``importlib.metadata`` so recording torch's version never imports torch (seconds, GBs).
    Packages that are not installed are left out.
    """
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader (or a crash) sees the old file or the new one, never half.

    Writes a temporary file in the same directory, fsyncs it, ``os.replace``s it over the target
    (atomic on POSIX) and fsyncs the directory so the rename itself survives a power loss.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
