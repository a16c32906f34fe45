"""The synthesis stage: the data engine, with the teacher as its assistant, writes tasks and dialogues.

Wiring follows ``eigendspy demo-synth``: on the embedded model every other role runs in small-model mode
with grammar-constrained JSON (DSPy's JSON adapter) and the LLM judges off. The assistant role is the
teacher: `eigendspy.agents.GoldTeacher` (``teacher = "gold"``) or the DSPy `Assistant` on a role LM. The
simulated user is the engine's `UserSimulator`; in small-model mode it chooses among utterances stated from
its scenario, the first of which is the request itself, and the teacher acts only on what the user has
conveyed — so an accepted dialogue is one where the user told the agent what to do. The stage reports how
often the user's first message carried the request, and how many dialogues the teacher completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eigendspy.core.records import DialogueRecord
from eigendspy.core.task import Task
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.store.store import RunManifest, RunStore, holds_run_files
from eigendspy.recipe.config import RecipeConfig

RUN = "run"


def engine_config(config: RecipeConfig) -> EngineConfig:
    """The engine settings of the recipe's synthesis run (one round; the grid or LM planner gives the cells)."""
    s = config.synthesis
    local = config.synthesis_lm == "local" or config.teacher == "local"
    return EngineConfig(domain=config.domain, seed=config.seed, streams=s.streams, rounds=1,
                        tasks_per_round=math.ceil(s.tasks / s.streams), episodes_per_task=s.episodes_per_task,
                        max_repairs=1, max_steps=s.max_steps, concurrency=1 if local else 8, held_out_split=None,
                        small_model=s.small_model, llm_judges=s.llm_judges, plan_tools=s.plan_tools)


def build_roles(config: RecipeConfig, roles: Roles | None = None) -> Roles:
    """The synthesis roles: ``roles`` as given (``synthesis_lm = "scripted"``) or built on the synthesis LM;
    then the recipe's planner and teacher put in."""
    from eigendspy.agents import Assistant, GoldTeacher
    from eigendspy.recipe.grid_planner import GridPlanner

    if roles is None:
        if config.synthesis_lm == "scripted":
            raise ValueError("synthesis_lm='scripted' needs the roles passed in (run_recipe(..., roles=...), e.g. "
                             "eigendspy.testing.scripted_roles())")
        roles = Roles.from_lms(_role_lms(config, config.synthesis_lm))
    if config.synthesis.planner == "grid":
        roles.planner = GridPlanner(seed=config.seed)
    if config.teacher == "gold":
        roles.assistant = GoldTeacher(confirm_writes=config.synthesis.confirm_writes)
    else:
        roles.assistant = Assistant(lm=_role_lms(config, config.teacher)["assistant"])
    return roles


def _role_lms(config: RecipeConfig, lm_id: str) -> dict[str, Any]:
    from eigendspy.lm.config import LOCAL, ROLES, LMSpec, RoleLMConfig, build_role_lms

    if lm_id == LOCAL:
        import torch

        from eigendspy.lm.local.engine import local_lm

        lm = local_lm(max_new_tokens=config.synthesis.max_new_tokens, max_string_chars=160, max_array_items=3,
                      device="cuda" if torch.cuda.is_available() else "cpu")
        return dict.fromkeys(ROLES, lm)
    return build_role_lms(RoleLMConfig(default=LMSpec(model=lm_id)))


def run_synthesis(config: RecipeConfig, folder: Path, domain: Any, roles: Roles | None = None,
                  on_record: Callable[[str, bool], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the engine into ``folder/run`` and return its counts and user statistics."""
    import dspy

    from eigendspy.engine.engine import DataEngine
    from eigendspy.lm.cached_adapter import json_adapter

    cfg = engine_config(config)
    run_dir = folder / RUN
    manifest = RunManifest(config=cfg, lms={"synthesis": config.synthesis_lm, "assistant": config.teacher},
                           seed=config.seed, domain=config.domain, notes={"domain_options": config.domain_options})
    store = RunStore.open(run_dir) if holds_run_files(run_dir) else RunStore.create(run_dir, manifest)
    built = build_roles(config, roles)
    local = "local" in (config.synthesis_lm, config.teacher)
    try:
        with dspy.context(adapter=json_adapter(cfg.cached_adapter)) if local else contextlib.nullcontext():
            result = asyncio.run(DataEngine(domain, built, store, cfg, progress=on_record).run())
    finally:
        store.close()
    with RunStore.open(run_dir, read_only=True) as reader:
        dialogues = list(reader.dialogue_records())
        tasks = {r.task.id: r.task for r in reader.task_records() if r.task is not None}
        calls = reader.summary().usage.calls
    return {"run_dir": str(run_dir), "accepted_tasks": result.accepted_tasks,
            "rejected_tasks": result.rejected_tasks, "accepted_dialogues": result.accepted_dialogues,
            "rejected_dialogues": result.rejected_dialogues, "plan_cells": result.diversity.plan_cells_covered,
            "lm_calls": dict(calls), **user_statistics(dialogues, tasks)}


def user_statistics(dialogues: list[DialogueRecord], tasks: dict[str, Task]) -> dict[str, Any]:
    """How well the simulated user conveyed its task: the share of dialogues whose first user message
    holds every string argument of the gold actions, and the share the teacher completed (checker passed)."""
    conveyed = 0
    for record in dialogues:
        first = next((m.content or "" for m in record.messages if m.role == "user" and m.content), "")
        task = tasks.get(record.task_id)
        values = [str(v) for a in (task.gold_actions if task else []) if a.requestor == "assistant"
                  for v in a.arguments.values() if isinstance(v, str | int) and not isinstance(v, bool)]
        conveyed += bool(values) and all(v.lower() in first.lower() for v in values)
    n = len(dialogues)
    return {"dialogues": n, "first_user_message_conveys_task": conveyed / n if n else None,
            "checker_passed": sum(d.checker_passed for d in dialogues) / n if n else None}

