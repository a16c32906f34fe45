"""The run directory: append-only, crash-safe JSONL records with a manifest, read back for resume,
summaries and export.
"""

from eigendspy.engine.store.files import atomic_write_text, package_versions
from eigendspy.engine.store.manifest import ManifestError, ManifestMissingError, RunExistsError, read_manifest
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.engine.store.summary import RunSummary, summarize

__all__ = [
    "ManifestError",
    "ManifestMissingError",
    "RunExistsError",
    "RunManifest",
    "RunStore",
    "RunSummary",
    "atomic_write_text",
    "package_versions",
    "read_manifest",
    "summarize",
]
