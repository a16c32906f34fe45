"""What differs between a run's stored manifest and the settings a resume was asked to use.

A resumed run keeps the stored manifest, because it describes how the stored records were made.
Resuming with another seed, size, domain or LM would mix records made two ways under one manifest
and skip or redo the wrong work, so the CLI refuses a resume whose settings differ (unless forced)
and names each difference; this module computes that list.
"""

from __future__ import annotations

from typing import Any

from eigendspy.engine.store.store import RunManifest

#: Config keys that change how fast a run goes, not what it produces: never a reason to refuse.
OPERATIONAL_KEYS = frozenset({"concurrency", "workers"})


def manifest_differences(stored: RunManifest, wanted: RunManifest) -> list[str]:
    """One ``"name: stored -> wanted"`` string per setting that differs, in a stable order.

    Compares the domain, data directory, seed, the LM of each role, every config key except
    `OPERATIONAL_KEYS`, and ``notes["n"]`` where both manifests record it (older runs do not).
    """
    diffs: list[str] = []

    def check(name: str, old: Any, new: Any) -> None:
        if old != new:
            diffs.append(f"{name}: {old!r} -> {new!r}")

    for field in ("domain", "data_dir", "seed"):
        check(field, getattr(stored, field), getattr(wanted, field))
    if "n" in stored.notes and "n" in wanted.notes:
        check("n", stored.notes["n"], wanted.notes["n"])
    for role in sorted(set(stored.lms) | set(wanted.lms)):
        check(f"lm[{role}]", stored.lms.get(role), wanted.lms.get(role))
    for key in sorted((set(stored.config) | set(wanted.config)) - OPERATIONAL_KEYS):
        check(f"config.{key}", stored.config.get(key), wanted.config.get(key))
    return diffs
