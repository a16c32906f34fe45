"""tau2-bench results files: write ours so ``tau2 evaluate-trajs`` can re-grade them, read theirs.

A results file is one JSON object: ``timestamp``, ``info`` (run settings, including the policy
and agent/user descriptions), ``tasks`` (tau2 task dicts), ``simulations`` (one run per
episode: ids, times, termination reason, ``reward_info``, messages) and ``simulation_index``.
Message dicts carry every field tau2's own models write (nulls included), so the file has the
same shape as one tau2 wrote itself.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from eigendspy.core.messages import Message, TerminationReason
from eigendspy.core.task import Task

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.orchestrator import Episode

_CHAT_FIELDS: dict[str, Any] = {
    "role": None, "content": None, "tool_calls": None, "is_audio": False, "turn_idx": None, "timestamp": None,
    "cost": None, "usage": None, "raw_data": None, "generation_time_seconds": None, "audio_format": None,
    "audio_path": None, "audio_script_gold": None, "speech_effects": None, "source_effects": None,
    "channel_effects": None, "turn_taking_action": None, "utterance_ids": None, "chunk_id": None,
    "is_final_chunk": True, "source": None, "contains_speech": True,
}
_TOOL_FIELDS: dict[str, Any] = {
    "id": None, "role": "tool", "content": None, "requestor": "assistant", "error": False, "turn_idx": None,
    "timestamp": None,
}
_SIM_FIELDS: dict[str, Any] = {
    "agent_cost": None, "user_cost": None, "agent_usage": None, "ticks": None, "mode": "half_duplex",
    "speech_environment": None, "review": None, "user_only_review": None, "info": None,
    "auth_classification": None, "hallucination_retries_used": 0, "hallucination_check": None,
    "provider_session_id": None, "policy": None, "effect_timeline": None,
}


class RunInfo(BaseModel):
    """Who played which side, with which limits (tau2's ``info`` block)."""

    agent_llm: str = "unknown"
    user_llm: str = "unknown"
    agent_implementation: str = "eigendspy"
    user_implementation: str = "eigendspy_user_simulator"
    temperature: float = 0.0
    num_trials: int = 1
    max_steps: int = 200
    max_errors: int = 10
    seed: int = 300
    git_commit: str = "eigendspy"


def tau2_message(message: Message, timestamp: str) -> dict[str, Any]:
    """A message dict with every field tau2 writes for its role (extra tau2 fields are kept)."""
    data = message.model_dump(mode="json", exclude_none=True)
    if message.role == "tool":
        out = {**_TOOL_FIELDS, **data}
    else:
        out = {**_CHAT_FIELDS, **{k: v for k, v in data.items() if k not in ("id", "requestor", "error")}}
    out["timestamp"] = out.get("timestamp") or timestamp
    return out


def _info(domain: Domain, run: RunInfo) -> dict[str, Any]:
    return {
        "git_commit": run.git_commit,
        "num_trials": run.num_trials,
        "max_steps": run.max_steps,
        "max_errors": run.max_errors,
        "user_info": {
            "implementation": run.user_implementation, "llm": run.user_llm,
            "llm_args": {"temperature": run.temperature}, "global_simulation_guidelines": None,
            "voice_settings": None, "persona_config": None,
        },
        "agent_info": {
            "implementation": run.agent_implementation, "llm": run.agent_llm,
            "llm_args": {"temperature": run.temperature}, "voice_settings": None,
        },
        "environment_info": {"domain_name": domain.name, "policy": domain.policy, "tool_defs": None},
        "seed": run.seed,
        "text_streaming_config": None,
        "speech_complexity": None,
        "audio_native_config": None,
        "retrieval_config": None,
        "retrieval_config_kwargs": None,
    }


def build_results(domain: Domain, tasks: Sequence[Task], episodes: Sequence[Episode],
                  run: RunInfo | None = None) -> dict[str, Any]:
    """The results dict for a set of scored episodes."""
    run = run or RunInfo()
    now = dt.datetime.now().isoformat()
    sims = []
    for ep in episodes:
        start = dt.datetime.now()
        end = start + dt.timedelta(seconds=ep.duration_s)
        sims.append({
            "id": f"sim-{ep.task_id}-{ep.trial}",
            "task_id": ep.task_id,
            "timestamp": now,
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "duration": ep.duration_s,
            "termination_reason": ep.termination_reason.value,
            "reward_info": ep.check.to_tau2() if ep.check is not None else None,
            "messages": [tau2_message(m, now) for m in ep.messages],
            "trial": ep.trial,
            "seed": ep.seed,
            **_SIM_FIELDS,
        })
    wanted = {ep.task_id for ep in episodes}
    return {
        "timestamp": now,
        "info": _info(domain, run),
        "tasks": [t.model_dump(mode="json") for t in tasks if t.id in wanted],
        "simulations": sims,
        "simulation_index": None,
    }


def write_results(path: str | Path, domain: Domain, tasks: Sequence[Task], episodes: Sequence[Episode],
                  run: RunInfo | None = None) -> Path:
    """Write a tau2 results file atomically (temp file + rename: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_results(domain, tasks, episodes, run)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
    return path


class LoadedSimulation(BaseModel):
    id: str
    task_id: str
    trial: int
    termination_reason: TerminationReason
    reward: float | None
    messages: list[Message]


def read_results(path: str | Path) -> tuple[list[Task], list[LoadedSimulation]]:
    """Read a tau2 results file (ours or tau2's): its tasks and simulations."""
    raw = json.loads(Path(path).read_text())
    for key in ("info", "tasks", "simulations"):
        if key not in raw:
            raise ValueError(f"{path}: not a tau2 results file (missing {key!r})")
    tasks = [Task.model_validate(t) for t in raw["tasks"]]
    sims = [
        LoadedSimulation(
            id=s["id"], task_id=s["task_id"], trial=s.get("trial", 0),
            termination_reason=s["termination_reason"],
            reward=(s.get("reward_info") or {}).get("reward"),
            messages=[Message.model_validate(m) for m in s["messages"]],
        )
        for s in raw["simulations"]
    ]
    return tasks, sims
