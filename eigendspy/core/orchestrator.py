"""Async episode loop: user <-> assistant <-> environment, with tau2-bench's semantics.

Semantics (tau2's): the assistant opens with a fixed greeting (unless the task carries a
message history, which is continued); a user message containing ``###STOP###``,
``###TRANSFER###`` or ``###OUT-OF-SCOPE###`` ends the episode (user stop); an assistant message
containing ``###STOP###`` ends it too (agent stop); every hop of a message counts as a step
(max 200); tool errors are counted over the whole episode (max 10). A participant crash ends
the episode as an agent/user error, an `InfrastructureError` as an infrastructure error — the
episode is returned either way, never raised.

`Orchestrator.run_many` runs thousands of episodes with bounded concurrency; each episode has
its own seed derived from (base seed, task id, trial), so reruns are reproducible.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, TerminationReason
from eigendspy.core.participants import InfrastructureError, Participant, TokenTrace, TurnContext, as_turn

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.task import Task
    from eigendspy.scoring.checker import Checker
    from eigendspy.scoring.results import CheckResult

logger = logging.getLogger(__name__)

GREETING = "Hi! How can I help you today?"
USER_STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
AGENT_STOP_TOKEN = "###STOP###"


class EpisodeConfig(BaseModel):
    """Limits and conventions of one episode (defaults are tau2's)."""

    model_config = ConfigDict(frozen=True)

    max_steps: int = 200
    max_errors: int = 10
    greeting: str = GREETING
    seed: int = 300


class Episode(BaseModel):
    """One finished dialogue: messages, why it ended, and (optionally) its score."""

    task_id: str
    trial: int = 0
    seed: int = 0
    messages: list[Message]
    termination_reason: TerminationReason
    steps: int = 0
    num_errors: int = 0
    duration_s: float = 0.0
    traces: dict[int, TokenTrace] = Field(default_factory=dict)
    error: str | None = None
    check: Any = None

    @property
    def result(self) -> CheckResult | None:
        return self.check

    @property
    def reward(self) -> float | None:
        return self.check.reward if self.check is not None else None


def episode_seed(base_seed: int, task_id: str, trial: int) -> int:
    digest = hashlib.sha256(f"{base_seed}:{task_id}:{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Orchestrator:
    """Runs episodes of one domain between an assistant and a user participant.

    Args:
        domain: The domain (tools, DBs, sync hook).
        assistant: The assistant participant.
        user: The user participant.
        config: Step/error limits, greeting and base seed.
        checker_factory: ``f(task) -> Checker``; when given, every episode is scored.
        tau2_compat: Build environments in tau2-compatible mode.
    """

    def __init__(
        self,
        domain: Domain,
        assistant: Participant,
        user: Participant,
        *,
        config: EpisodeConfig | None = None,
        checker_factory: Callable[[Task], Checker] | None = None,
        tau2_compat: bool = False,
    ) -> None:
        for name, p in (("assistant", assistant), ("user", user)):
            if not callable(getattr(p, "respond", None)):
                raise TypeError(f"{name} must have an async respond(messages, ctx) method; got {p!r}")
        self.domain = domain
        self.assistant = assistant
        self.user = user
        self.config = config or EpisodeConfig()
        self.checker_factory = checker_factory
        self.tau2_compat = tau2_compat
        self._checkers: dict[str, Checker] = {}

    def checker(self, task: Task) -> Checker | None:
        if self.checker_factory is None:
            return None
        if task.id not in self._checkers:
            self._checkers[task.id] = self.checker_factory(task)
        return self._checkers[task.id]

    async def run(self, task: Task, trial: int = 0) -> Episode:
        """Run one episode to its end and (with a checker factory) score it."""
        seed = episode_seed(self.config.seed, task.id, trial)
        started = time.perf_counter()
        episode = await self._loop(task, trial, seed)
        episode.duration_s = time.perf_counter() - started
        checker = self.checker(task)
        if checker is not None and episode.termination_reason is not TerminationReason.INFRASTRUCTURE_ERROR:
            episode.check = await asyncio.to_thread(checker.score, episode.messages, episode.termination_reason)
        return episode

    async def run_many(
        self,
        tasks: Iterable[Task],
        trials: int = 1,
        *,
        concurrency: int = 32,
        on_done: Callable[[Episode], None] | None = None,
    ) -> list[Episode]:
        """Run ``trials`` episodes of each task, at most ``concurrency`` at a time (results in order)."""
        jobs = [(task, trial) for task in tasks for trial in range(trials)]
        semaphore = asyncio.Semaphore(concurrency)

        async def one(task: Task, trial: int) -> Episode:
            async with semaphore:
                episode = await self.run(task, trial)
            if on_done is not None:
                on_done(episode)
            return episode

        return list(await asyncio.gather(*(one(t, k) for t, k in jobs)))

    async def _loop(self, task: Task, trial: int, seed: int) -> Episode:
        cfg = self.config
        env = Environment.for_task(self.domain, task, tau2_compat=self.tau2_compat)
        messages: list[Message] = [m.model_copy(deep=True) for m in task.message_history]
        traces: dict[int, TokenTrace] = {}
        steps = 0
        errors = 0
        contexts = {
            role: TurnContext(
                role=role, task=task, domain=self.domain, seed=seed, trial=trial,
                tools=self.domain.tool_schemas(role),
            )
            for role in ("assistant", "user")
        }
        if not messages:
            messages.append(Message.assistant(cfg.greeting))
        next_role = _next_speaker(messages)

        def finish(reason: TerminationReason, error: str | None = None) -> Episode:
            return Episode(task_id=task.id, trial=trial, seed=seed, messages=messages, termination_reason=reason,
                           steps=steps, num_errors=errors, traces=traces, error=error)

        while True:
            if steps >= cfg.max_steps:
                return finish(TerminationReason.MAX_STEPS)
            participant = self.assistant if next_role == "assistant" else self.user
            ctx = contexts[next_role].model_copy(update={"step": steps})
            try:
                turn = as_turn(await participant.respond(list(messages), ctx), next_role)
            except InfrastructureError as exc:
                return finish(TerminationReason.INFRASTRUCTURE_ERROR, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # a participant crash ends the episode, never the run
                logger.warning("%s participant failed on task %s: %s", next_role, task.id, exc)
                reason = TerminationReason.AGENT_ERROR if next_role == "assistant" else TerminationReason.USER_ERROR
                return finish(reason, f"{type(exc).__name__}: {exc}")
            msg = turn.message
            if turn.trace is not None:
                traces[len(messages)] = turn.trace
            messages.append(msg)
            steps += 1
            text = msg.content or ""
            if msg.tool_calls:
                for i, call in enumerate(msg.tool_calls):
                    if not call.id:
                        call.id = f"call_{steps}_{i}"
                results = [env.execute(call, next_role) for call in msg.tool_calls]
                messages.extend(results)
                errors += sum(1 for r in results if r.error)
                steps += 1
                env.sync()
                if errors >= cfg.max_errors:
                    return finish(TerminationReason.TOO_MANY_ERRORS)
                continue  # the same side speaks again after seeing its tool results
            env.sync()
            if next_role == "user" and any(tok in text for tok in USER_STOP_TOKENS):
                return finish(TerminationReason.USER_STOP)
            if next_role == "assistant" and AGENT_STOP_TOKEN in text:
                return finish(TerminationReason.AGENT_STOP)
            next_role = "user" if next_role == "assistant" else "assistant"


def _next_speaker(messages: Sequence[Message]) -> str:
    """Who speaks next when continuing a dialogue (tau2's rule for message histories)."""
    last = messages[-1]
    if last.role == "tool":
        return last.requestor or "assistant"
    if last.tool_calls:
        raise ValueError("message history ends with unanswered tool calls")
    return "user" if last.role == "assistant" else "assistant"


def run_sync(coro: Any) -> Any:
    """Run a coroutine from sync code, also where a loop is already running (Jupyter, or an optimizer
    calling ``forward`` from inside one): then in a worker thread, with the caller's context copied so
    DSPy's settings (trace, LM) stay visible to the coroutine."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()
