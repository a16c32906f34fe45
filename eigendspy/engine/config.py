"""What one synthesis run is made of: its settings (`EngineConfig`, stored in the run manifest) and the
DSPy modules that play its roles (`Roles`).

Why its own module: the engine, its item worker, Ray actors, the CLI and the optimizers all need these two
types, and none of them should have to import the engine loop to get them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dspy
from pydantic import BaseModel, ConfigDict

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.reflector import Reflector
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import TrajectoryValidator


class EngineConfig(BaseModel):
    """Settings of one synthesis run (stored in the run manifest)."""

    model_config = ConfigDict(extra="forbid")

    domain: str = "mock"
    data_dir: str | None = None
    seed: int = 0
    streams: int = 2
    rounds: int = 1
    tasks_per_round: int = 2
    episodes_per_task: int = 1
    max_repairs: int = 2
    concurrency: int = 16
    held_out_split: str | None = "test"
    reject_null_pass: bool = True
    max_steps: int = 40
    max_errors: int = 10
    retries: int = 3
    retry_delay_s: float = 0.05
    breaker_threshold: int = 20
    entities_k: int = 3
    entities_chars: int = 1500
    schedule: Literal["pipelined", "waves"] = "pipelined"
    small_model: bool = False
    """Small-model mode (`eigendspy.lm.small_model`): the generator, assistant and user get per-call typed
    outputs that leave a tiny model no structurally wrong choice (what `demo-synth` uses on the
    embedded model). Off: every role's output types are the signatures' own."""
    llm_judges: bool = True
    """Ask the task and trajectory LLM judges. Off: execution and the deterministic pre-checks decide
    alone and the verdicts say so — for a judge LM too weak to judge."""


@dataclass
class Roles:
    """The DSPy modules that play each role (each may carry its own LM)."""

    planner: MetaPlanner
    generator: TaskGenerator
    task_validator: TaskValidator
    user: UserSimulator
    assistant: Assistant
    trajectory_validator: TrajectoryValidator
    reflector: Reflector

    @classmethod
    def from_lms(cls, lms: dict[str, dspy.LM]) -> Roles:
        return cls(
            planner=MetaPlanner(lm=lms.get("planner")),
            generator=TaskGenerator(lm=lms.get("generator")),
            task_validator=TaskValidator(judge_lm=lms.get("task_validator")),
            user=UserSimulator(lm=lms.get("user")),
            assistant=Assistant(lm=lms.get("assistant")),
            trajectory_validator=TrajectoryValidator(lm=lms.get("trajectory_validator")),
            reflector=Reflector(lm=lms.get("reflector")),
        )
