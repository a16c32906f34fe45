"""The self-evolving data engine: plan streams synthesize tasks, verify them by execution, roll them out
and keep the dialogues both the checker and the trajectory validator accept; the run store; the Hugging
Face export and its dataset card; diversity and held-out filters; Ray scale-out.

Exports are lazy: the RL stage reads exports and run stores (``engine.export``, ``engine.store``) on
machines without DSPy, and those modules must not pull in the engine loop and its role modules.
"""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "EngineConfig": "eigendspy.engine.config",
    "Roles": "eigendspy.engine.config",
    "DataEngine": "eigendspy.engine.engine",
    "EngineResult": "eigendspy.engine.engine",
    "ExportResult": "eigendspy.engine.export",
    "export_run": "eigendspy.engine.export",
    "RunManifest": "eigendspy.engine.store.store",
    "RunStore": "eigendspy.engine.store.store",
    "RunSummary": "eigendspy.engine.store.summary",
    "summarize": "eigendspy.engine.store.summary",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
