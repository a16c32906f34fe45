"""What one synthesis run is made of: its settings (`EngineConfig`, stored in the run manifest) and the
DSPy modules that play its roles (`Roles`), which may start from compiled programs (`load_keeping_lms`).

Why its own module: the engine, its item worker, Ray actors, the CLI and the optimizers all need these
types, and none of them should have to import the engine loop to get them. Loading a compiled program
lives here, not in `eigendspy.optimizers` (which saves them), because Ray actors load them too and the
engine sits below the optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import dspy
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.reflector import Reflector
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import TrajectoryValidator
from eigendspy.core.participants import Participant


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
    plan_tools: bool = False
    """Restrict each task's gold actions to the tools its plan's ``tool_pattern`` names (when it names any of
    the domain's tools): the plan then decides what kind of task a stream makes, even for a small model
    that would otherwise pick the same tool every time. Off: any tool (the plan is advice in the prompt)."""
    llm_judges: bool = True
    """Ask the task and trajectory LLM judges. Off: execution and the deterministic pre-checks decide
    alone and the verdicts say so — for a judge LM too weak to judge."""
    near_duplicate_jaccard: float | None = Field(0.5, gt=0, le=1)
    """Reject a task as a near-duplicate when it acts on an entity an earlier accepted task acts on and their
    scenario + gold-action texts share at least this share of word 2-grams (`engine.filters.DuplicateFilter`).
    ``None``: exact duplicates (same gold actions) only."""
    generator_mode: Literal["sampled", "explore"] = "sampled"
    """How the task generator sees the DB. ``sampled``: a few sampled rows (``entities_k``, ``entities_chars``).
    ``explore``: a `dspy.ReAct` agent over the domain's read tools, starting from those rows, bounded by
    ``explore_steps`` (`eigendspy.agents.explore_generator`); not combinable with ``small_model``."""
    explore_steps: int = Field(6, ge=1)
    """The ReAct step bound of ``generator_mode="explore"``."""
    keep_lm_history: bool = False
    """Keep DSPy's trace and LM history for every role call (``dspy.inspect_history`` while debugging). Off:
    each call runs under `eigendspy.lm.bounded_state.bounded_lm_state`, so a long run keeps flat memory
    (a trace an optimizer set itself is kept either way)."""
    workers: Literal["auto"] | PositiveInt = "auto"
    """Worker processes that run the items (`eigendspy.engine.processes.ProcessWorkerPool`; results are identical).
    ``"auto"``: one process per 16 streams, at least 2 and at most max(4, CPUs), when there are at least 16 streams
    and the roles can be rebuilt in a child process (the front end has a picklable roles factory: API or scripted
    LMs); in-process otherwise — a few streams gain nothing, and the embedded local model must not load its
    weights once per process. An integer: that many (``1``: in-process). Resolved by
    `eigendspy.engine.processes.worker_count`; how fast a run goes, not what it makes (a resume may change it).
    Read by front ends that start a pool (``eigendspy synth``): `DataEngine` itself runs items in-process unless
    it is handed a pool as ``worker``."""
    cached_adapter: bool = True
    """Format role prompts with `eigendspy.lm.cached_adapter.CachedChatAdapter` where DSPy would use its default
    ``ChatAdapter`` (same prompts byte for byte, the signature/tools part formatted once). Off: DSPy's own."""

    @model_validator(mode="after")
    def _explore_needs_full_outputs(self) -> EngineConfig:
        if self.generator_mode == "explore" and self.small_model:
            raise ValueError("generator_mode='explore' cannot be combined with small_model")
        return self


@dataclass
class Roles:
    """The DSPy modules that play each role (each may carry its own LM).

    The assistant may also be any participant (``async respond(messages, ctx)``), e.g. the gold-action
    teacher `eigendspy.agents.GoldTeacher`: the engine only plays it in episodes. Such a role takes no
    small-model mode (`eigendspy.engine.items.apply_modes` leaves it alone) and no compiled program.
    """

    planner: MetaPlanner
    generator: TaskGenerator
    task_validator: TaskValidator
    user: UserSimulator
    assistant: Assistant | Participant
    trajectory_validator: TrajectoryValidator
    reflector: Reflector

    @classmethod
    def names(cls) -> list[str]:
        """The role names, which are also the artifact names of compiled roles (``<role>.json``)."""
        return [f.name for f in fields(cls)]

    def lms(self) -> list[Any]:
        """Every predictor's LM across the roles (``None`` where a predictor uses DSPy's configured LM)."""
        found = []
        for name in self.names():
            role = getattr(self, name)
            if isinstance(role, dspy.Module):
                found += [predictor.lm for _, predictor in role.named_predictors()]
        return found

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

    def load_compiled(self, compiled_dir: str | Path) -> list[str]:
        """Load every ``<role>.json`` in ``compiled_dir`` (`evolve`'s ``OUT/compiled``) into its role.

        Each role keeps its own LMs (`load_keeping_lms`); roles with no file stay as they are.

        Returns:
            The names of the roles loaded, in `names` order.

        Raises:
            FileNotFoundError: ``compiled_dir`` holds no ``<role>.json`` for any role.
            ValueError: a compiled program is given for a role played by a plain participant (no DSPy
                program to load it into).
        """
        found = compiled_files(compiled_dir)
        plain = [name for name in found if not isinstance(getattr(self, name), dspy.Module)]
        if plain:
            raise ValueError(f"compiled program(s) for role(s) {plain} in {compiled_dir}, but those roles are "
                             "played by plain participants (not DSPy modules); remove the files or the participant")
        for name, path in found.items():
            load_keeping_lms(getattr(self, name), path)
        return list(found)


def compiled_files(compiled_dir: str | Path) -> dict[str, Path]:
    """The ``<role>.json`` files in ``compiled_dir``, by role name, in `Roles.names` order.

    Raises:
        FileNotFoundError: There is none (a wrong ``--compiled`` path must not silently run uncompiled).
    """
    folder = Path(compiled_dir)
    found = {name: folder / f"{name}.json" for name in Roles.names() if (folder / f"{name}.json").is_file()}
    if not found:
        raise FileNotFoundError(f"no compiled role (<role>.json) in {folder}")
    return found


def load_keeping_lms(module: dspy.Module, path: str | Path) -> dspy.Module:
    """Load a state saved by DSPy's own ``module.save`` into ``module`` (in place, also returned).

    Why keep the LMs: a compiled program is its instructions and demos; LMs are runtime choices
    (`eigendspy.optimizers.save_compiled` saves none), so each predictor keeps the LM it was built with.

    Args:
        module: A module of the structure that was saved (e.g. ``Assistant(lm=my_lm)``).
        path: The saved ``.json`` state.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no compiled program at {path}")
    lms = {name: predictor.lm for name, predictor in module.named_predictors()}
    module.load(str(path))
    for name, predictor in module.named_predictors():
        predictor.lm = lms.get(name)
    return module
