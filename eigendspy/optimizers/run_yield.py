"""How a workflow change is measured: a run's yields (`RunYield`) and the effect between two runs (`effect_of`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eigendspy.engine.store.store import RunStore, RunSummary

__all__ = ["RunYield", "effect_of"]


class RunYield(BaseModel):
    """The yields a workflow change is judged by."""

    run_id: str
    run_dir: Path
    tasks: int
    tasks_accepted: int
    dialogues: int
    dialogues_accepted: int
    lm_calls: int

    @property
    def task_yield(self) -> float:
        return self.tasks_accepted / self.tasks if self.tasks else 0.0

    @property
    def dialogue_yield(self) -> float:
        return self.dialogues_accepted / self.dialogues if self.dialogues else 0.0

    @property
    def dialogues_per_task(self) -> float:
        """Accepted dialogues per task attempted: the data one unit of synthesis effort buys."""
        return self.dialogues_accepted / self.tasks if self.tasks else 0.0

    def metrics(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "task_yield": round(self.task_yield, 4),
                "dialogue_yield": round(self.dialogue_yield, 4),
                "dialogues_per_task": round(self.dialogues_per_task, 4), "accepted_dialogues": self.dialogues_accepted,
                "lm_calls": self.lm_calls}

    @classmethod
    def of(cls, store: RunStore, summary: RunSummary) -> RunYield:
        task, dialogue = summary.kinds.get("task"), summary.kinds.get("dialogue")
        return cls(run_id=summary.run_id, run_dir=store.root, tasks=task.total if task else 0,
                   tasks_accepted=task.accepted if task else 0, dialogues=dialogue.total if dialogue else 0,
                   dialogues_accepted=dialogue.accepted if dialogue else 0, lm_calls=sum(summary.usage.calls.values()))


def effect_of(before: RunYield, after: RunYield) -> dict[str, Any]:
    """The measured effect of a batch of changes: both runs' yields and their difference."""
    b, a = before.metrics(), after.metrics()
    return {"before": b, "after": a, "delta": {k: round(a[k] - b[k], 4) for k in
                                               ("task_yield", "dialogue_yield", "dialogues_per_task", "lm_calls")}}
