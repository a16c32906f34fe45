"""`EvolveLoopConfig`: the settings of one closed-loop run (stored in ``loop.json`` and each round's manifest)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eigendspy.optimizers.workflow import WorkflowBounds

LoopRole = Literal["generator", "task_validator", "user", "assistant", "trajectory_validator"]
PIPELINE_ORDER: tuple[LoopRole, ...] = ("generator", "task_validator", "user", "assistant", "trajectory_validator")
"""The order roles are compiled in within a round: a later role plays against the earlier ones' compiled
programs (the assistant is evolved against this round's compiled user simulator)."""


class EvolveLoopConfig(BaseModel):
    """What a closed loop runs: how many rounds of how much synthesis, and how each round recompiles.

    ``engine_*`` fields go to every round's `EngineConfig` (round ``i`` uses seed ``seed + i``, so
    rounds make new data but a rerun makes the same). ``blank_feedback`` is the ablation: every
    metric's feedback and every stored rejection reason is replaced by blanks, scores kept.
    """

    model_config = ConfigDict(extra="forbid")

    domain: str = "mock"
    data_dir: str | None = None
    rounds: int = Field(3, ge=1)
    tasks_per_round: int = Field(8, ge=1, description="Tasks attempted per round (over all streams)")
    streams: int = Field(4, ge=1)
    episodes_per_task: int = Field(1, ge=1)
    optimizer: Literal["gepa", "miprov2", "bootstrap"] = "gepa"
    budget: Literal["light", "medium", "heavy"] | int = 40
    roles: list[LoopRole] = Field(default_factory=lambda: list(PIPELINE_ORDER),
                                  description="Roles eligible for recompilation")
    top_k: int = Field(2, ge=1, description="Roles compiled per round (largest rejection shares first)")
    max_examples: int = Field(8, ge=2, description="Per role and round: failures kept (plus as many passing items)")
    seed: int = 0
    workflow: bool = False
    bounds: WorkflowBounds = Field(default_factory=WorkflowBounds)
    blank_feedback: bool = False
    max_repairs: int = Field(2, ge=0, description="Engine repair rounds of a rejected draft (the engine default)")
    held_out_split: str | None = "test"
    num_threads: int | None = 1

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one role must be eligible")
        return [r for r in PIPELINE_ORDER if r in value]  # pipeline order, no repeats

    @field_validator("budget")
    @classmethod
    def _positive(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value <= 0:
            raise ValueError(f"budget must be positive, got {value}")
        return value
