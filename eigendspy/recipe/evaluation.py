"""The evaluation stage: one column's agent on every held-out set, pass^1..k with bootstrap CIs.

The agent is built from its spec exactly as ``eigendspy eval --agent model:DIR`` builds it (so it sees the
same rendering as in SFT and GRPO) and plays every set against the same deterministic user
(`eigendspy.recipe.scenario_user.ScenarioUser`). The gold teacher plays the same episodes once more as the
``teacher`` reference: the ceiling this user allows on each set (a task it cannot convey, or whose success
needs device actions no gold action names, fails for every agent); episodes are scored by each task's checker with NL
assertions excluded, the RL reward's basis, and aggregated by `eigendspy.eval.pass_k.evaluate_outcomes`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from eigendspy.core.orchestrator import EpisodeConfig
from eigendspy.core.participants import Participant
from eigendspy.core.task import Task
from eigendspy.eval.pass_k import evaluate_outcomes
from eigendspy.eval.runner import episode_outcome, run_episodes
from eigendspy.eval.tau2_results import write_results
from eigendspy.recipe.config import EvalSettings
from eigendspy.recipe.scenario_user import ScenarioUser


class HeldOut(BaseModel):
    """One held-out set: its name, the domain it lives in and its tasks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    domain: Any
    tasks: list[Task]


def evaluate_agent(agent: str | Participant, held_out: Sequence[HeldOut], settings: EvalSettings, seed: int,
                   column: str, folder: Path | None = None) -> dict[str, Any]:
    """Run ``settings.trials`` episodes of each held-out task with ``agent`` (a participant spec, built as
    ``eigendspy eval --agent`` builds it, or a participant); return each set's `EvalReport` (JSON), wall time
    and the agent's generated tokens per second. With ``folder``, each set's episodes are also written there
    as a tau2 results file (``<set>/results.json``, re-gradable with ``eigendspy score``)."""
    if isinstance(agent, str):
        from eigendspy.train.participants import build_assistant

        agent = build_assistant(agent, temperature=settings.temperature, max_new_tokens=settings.max_new_tokens,
                                seed=seed)
    out: dict[str, Any] = {}
    for held in held_out:
        tasks = held.tasks[: settings.max_tasks] if settings.max_tasks else held.tasks
        if not tasks:
            continue
        started = time.perf_counter()
        episodes = run_episodes(held.domain, tasks, agent, ScenarioUser(), trials=settings.trials,
                                concurrency=settings.concurrency, progress=False,
                                config=EpisodeConfig(max_steps=settings.max_steps, seed=seed))
        wall = time.perf_counter() - started
        if folder is not None:
            write_results(folder / held.name / "results.json", held.domain, tasks, episodes)
        tokens = sum(len(trace.token_ids) for ep in episodes for trace in ep.traces.values())
        report = evaluate_outcomes([episode_outcome(e) for e in episodes], ks=range(1, settings.trials + 1),
                                   n_boot=settings.bootstrap, seed=seed, domain=held.domain.name,
                                   name=f"{column} / {held.name}")
        out[held.name] = {"report": report.model_dump(mode="json"), "wall_s": wall, "agent_tokens": tokens,
                          "tokens_per_s": tokens / wall if wall else 0.0,
                          "terminations": _count(e.termination_reason.value for e in episodes)}
    return out


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
