"""tau2-bench's own evaluator for ``bench_scoring``: timed live when importable, else the recorded figure.

Why a separate file: tau2-bench is an optional, third-party install (it needs Python >= 3.12 and
pins its own litellm), so nothing in ``eigendspy`` may import it; the benchmark only uses it to time
the reference evaluator on the very trajectories eigendspy scores.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import tempfile
from pathlib import Path

from eigendspy.eval.tau2_results import tau2_message

# ../shared/tau2 holds no timing of tau2's evaluator (its results_sample.json durations are
# placeholders), so the only recorded figure is the one in ../shared/DESIGN.md:
TAU2_RECORDED = {
    "ms_per_trajectory": 573.0,
    "detail": ("tau2 evaluate_simulation, ~573 ms per retail trajectory (60% re-loading the DB, 28% hashing), "
               "measured 2026-12-06 at low load with tau2's own code (recorded in shared/DESIGN.md; "
               "not re-run by this benchmark)"),
}
LIVE_DETAIL = ("tau2-bench evaluate_simulation(EvaluationType.ALL, NL_ASSERTION removed from the basis, "
               "strict_replay=False) per trajectory, in this process, side by side with the regimes")
_why: list[str] = []


def live_version() -> str | None:
    """tau2-bench's installed version, when it is installed."""
    try:
        return importlib.metadata.version("tau2")
    except importlib.metadata.PackageNotFoundError:
        return None


def recorded() -> dict:
    return dict(TAU2_RECORDED)


def why_not_live(asked: bool) -> str:
    if not asked:
        return "--no-live-tau2 given"
    return _why[-1] if _why else "tau2-bench not importable in this environment"


def _point_data_dir(data_dir: Path) -> None:
    """tau2 reads ``$TAU2_DATA_DIR/tau2/domains/retail`` at import: point it at the same files we score on."""
    if os.environ.get("TAU2_DATA_DIR"):
        return
    root = Path(tempfile.mkdtemp(prefix="tau2data-"))
    (root / "tau2" / "domains").mkdir(parents=True)
    (root / "tau2" / "domains" / "retail").symlink_to(data_dir.resolve(), target_is_directory=True)
    os.environ["TAU2_DATA_DIR"] = str(root)


def live_evaluator(data_dir: Path, cases):
    """A zero-argument function scoring ``cases`` with tau2's evaluator, or None (reason in ``why_not_live``)."""
    if importlib.util.find_spec("tau2") is None:
        _why.append("tau2-bench is not installed in this environment (import tau2 fails): it declares "
                    "Python >= 3.12 and pins its own litellm, so the project venv leaves it out; "
                    "see this benchmark's docstring for a side venv that times it live")
        return None
    _point_data_dir(data_dir)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
    try:
        from loguru import logger

        logger.disable("tau2")
        from tau2.data_model.simulation import SimulationRun
        from tau2.data_model.tasks import RewardType, Task
        from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    except ImportError as exc:  # e.g. an unrelated PyPI package that is also called "tau2"
        _why.append(f"an importable 'tau2' is not tau2-bench ({exc})")
        return None
    raw = {t["id"]: t for t in json.loads((data_dir / "tasks.json").read_text())}
    tau2_tasks = {}
    for task, _ in cases:
        if task.id not in tau2_tasks:
            t = Task.model_validate(raw[task.id])
            criteria = t.evaluation_criteria
            criteria.reward_basis = [b for b in criteria.reward_basis if b != RewardType.NL_ASSERTION]
            tau2_tasks[task.id] = t
    stamp = "2026-01-01T00:00:00"
    sims = [SimulationRun.model_validate({
        "id": f"bench-{i}", "task_id": task.id, "timestamp": stamp, "start_time": stamp, "end_time": stamp,
        "duration": 0.0, "termination_reason": "user_stop",
        "messages": [tau2_message(m, stamp) for m in messages]}) for i, (task, messages) in enumerate(cases)]

    def score() -> list[float]:
        return [evaluate_simulation(sim, tau2_tasks[sim.task_id], EvaluationType.ALL, solo_mode=False,
                                    domain="retail", strict_replay=False).reward for sim in sims]

    return score
