"""The self-evolving data engine: plan streams synthesize tasks, verify them by execution, roll them out
and keep the dialogues both the checker and the trajectory validator accept; the run store; the Hugging
Face export and its dataset card; diversity and held-out filters; Ray scale-out.
"""

from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.engine import DataEngine, EngineResult
from eigendspy.engine.export import ExportResult, export_run
from eigendspy.engine.store import RunManifest, RunStore, RunSummary, summarize

__all__ = [
    "DataEngine", "EngineConfig", "EngineResult", "ExportResult", "Roles", "RunManifest", "RunStore", "RunSummary",
    "export_run", "summarize",
]
