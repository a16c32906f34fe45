"""The per-item work of the data engine: make one task, play one episode.

Split from `eigendspy.engine.engine` so the same code runs in-process (asyncio, the default) or inside
Ray actors (`eigendspy.engine.ray`): the engine keeps the store, the plans and the order-dependent
filters on the driver, and hands out items that depend only on their inputs and their seeds.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import dspy
from dspy.utils.usage_tracker import track_usage

from eigendspy.agents.task_generator import DraftError, TaskGenerator
from eigendspy.core.domain import Domain
from eigendspy.core.messages import Message
from eigendspy.core.orchestrator import EpisodeConfig, Orchestrator
from eigendspy.core.participants import Participant, Turn, TurnContext
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord, Usage, Verdict
from eigendspy.core.task import Task
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.entities import sample_entities
from eigendspy.lm.bounded_state import bounded_lm_state
from eigendspy.lm.cached_adapter import chat_adapter, default_adapter_scope
from eigendspy.lm.request_slots import RequestSlots, limits_requests, request_slots
from eigendspy.lm.resilience import CallFailedError, CircuitBreaker, call_with_retries
from eigendspy.scoring.checker import Checker


class _Retrying:
    """A participant wrapper that retries LM failures before the orchestrator sees them."""

    def __init__(self, inner: Participant, role: str, engine: ItemWorker, usage: Usage) -> None:
        self.inner, self.role, self.engine, self.usage = inner, role, engine, usage

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Turn | Message:
        return await self.engine.call(self.role, lambda: self.inner.respond(messages, ctx), self.usage)


class ItemWorker:
    """Makes tasks and plays episodes for one domain with one set of roles (no store access)."""

    def __init__(self, domain: Domain, roles: Roles, config: EngineConfig) -> None:
        self.domain, self.roles, self.config = domain, roles, config
        apply_modes(roles, config)
        self.breaker = CircuitBreaker(config.breaker_threshold)
        # The concurrency limit is on LM requests in flight: held inside each request when every role LM
        # takes request slots itself (`eigendspy.lm.request_slots`), else around each whole role call.
        self.slots = RequestSlots(config.concurrency, on_acquire=self.breaker.check)
        self.slot_per_request = limits_requests(roles.lms())
        # off: DSPy's own ChatAdapter, set explicitly so the role modules' shared cached adapter steps aside too
        self.adapter = chat_adapter(cached=config.cached_adapter)

    async def call(self, role: str, fn: Callable[[], Awaitable[Any]], usage: Usage) -> Any:
        async def counted() -> Any:
            usage.add(role)
            per_request = self.slots if self.slot_per_request else None  # else one slot around the whole call
            async with contextlib.nullcontext() if per_request else self.slots:  # breaker checked once granted
                with request_slots(per_request), track_usage() as tracker, bounded_lm_state(
                        keep_trace=self.config.keep_lm_history, keep_history=self.config.keep_lm_history):
                    result = await fn()  # usage is tracked apart from the history, which is off by default
            _record_tokens(tracker.get_total_tokens(), role, usage)
            return result

        with default_adapter_scope(self.adapter):
            return await call_with_retries(counted, role=role, attempts=self.config.retries,
                                           base_delay=self.config.retry_delay_s, breaker=self.breaker)

    async def make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> TaskRecord:
        cfg = self.config
        usage = Usage()
        task_id = f"{self.domain.name}_{cfg.seed}_{key.replace('/', '_')}"
        feedback: list[str] = []
        last: tuple[Task, Verdict, bool | None] | None = None
        base = dict(work_key=key, stream=stream, round=r, plan=plan, usage=usage)
        for attempt in range(cfg.max_repairs + 1):
            entities = sample_entities(self.domain, random.Random(f"{cfg.seed}:{key}:{attempt}"),
                                       k=cfg.entities_k, max_chars=cfg.entities_chars)
            try:
                pred = await self.call("generator", lambda e=entities, f=list(feedback): _draft(
                    self.roles.generator, self.domain, plan, e, task_id, f,
                    plan_tool_names(plan, self.domain) if cfg.plan_tools else None), usage)
            except CallFailedError as exc:
                return TaskRecord(**base, accepted=False, stage=Stage.GENERATE, reasons=[exc.reason],
                                  repair_rounds=attempt)
            if isinstance(pred, DraftError):
                feedback = list(pred.reasons)
                continue
            task: Task = pred.task
            try:
                verdict_pred = await self.call("task_validator", lambda t=task: self.roles.task_validator.acall(
                    domain=self.domain, task=t, plan=plan), usage)
            except CallFailedError as exc:
                return TaskRecord(**base, task=task, accepted=False, stage=Stage.VALIDATE_TASK,
                                  reasons=[exc.reason], repair_rounds=attempt)
            verdict: Verdict = verdict_pred.verdict
            null_pass = verdict_pred.execution.null_pass if verdict_pred.execution is not None else None
            if verdict.passed:
                return TaskRecord(**base, task=task, accepted=True, stage=Stage.ACCEPT, validation=verdict,
                                  null_pass=null_pass, repair_rounds=attempt)
            feedback = list(verdict.reasons)
            last = (task, verdict, null_pass)
        if last is not None:
            task, verdict, null_pass = last
            return TaskRecord(**base, task=task, accepted=False, stage=Stage.VALIDATE_TASK, validation=verdict,
                              reasons=verdict.reasons, null_pass=null_pass, repair_rounds=cfg.max_repairs)
        return TaskRecord(**base, accepted=False, stage=Stage.GENERATE, reasons=feedback,
                          repair_rounds=cfg.max_repairs)

    async def episode(self, rec: TaskRecord, trial: int, key: str) -> DialogueRecord:
        """Roll out one dialogue of an accepted task, score it, and validate it."""
        cfg, task = self.config, rec.task
        usage = Usage()
        orch = Orchestrator(
            self.domain, _Retrying(self.roles.assistant, "assistant", self, usage),
            _Retrying(self.roles.user, "user", self, usage),
            config=EpisodeConfig(max_steps=cfg.max_steps, max_errors=cfg.max_errors, seed=cfg.seed),
            checker_factory=Checker.reward_factory(self.domain),
        )
        episode = await orch.run(task, trial)
        check = episode.check
        base = dict(work_key=key, task_id=task.id, plan_id=rec.plan.plan_id if rec.plan else None, trial=trial,
                    seed=episode.seed, domain=self.domain.name, messages=episode.messages,
                    termination_reason=episode.termination_reason.value, usage=usage,
                    reward=check.reward if check else 0.0, checker_passed=bool(check and check.passed),
                    checker_feedback=check.feedback() if check else (episode.error or ""))
        if episode.error and check is None:
            dialogue = DialogueRecord(**base, accepted=False, stage=Stage.ROLLOUT, reasons=[episode.error])
        else:
            try:
                pred = await self.call("trajectory_validator", lambda: self.roles.trajectory_validator.acall(
                    domain=self.domain, task=task, messages=episode.messages, plan=rec.plan,
                    checker_feedback=base["checker_feedback"]), usage)
                verdict: Verdict = pred.verdict
            except CallFailedError as exc:
                verdict = Verdict(passed=False, reasons=[f"validator unavailable: {exc.reason}"])
            reasons = ([] if base["checker_passed"] else list(check.failures)) + (
                [] if verdict.passed else list(verdict.reasons))
            accepted = base["checker_passed"] and verdict.passed and verdict.blame != "user"
            stage = Stage.ACCEPT if accepted else (Stage.CHECK if not base["checker_passed"]
                                                   else Stage.VALIDATE_TRAJECTORY)
            dialogue = DialogueRecord(**base, validator=verdict, accepted=accepted, stage=stage, reasons=reasons)
        return dialogue



def apply_modes(roles: Roles, config: EngineConfig) -> None:
    """Switch the role modules to the config's small-model mode, generator mode and judge setting (in place: the
    roles belong to this run; Ray workers build their own and apply the same config). A role played by
    a plain participant (the gold teacher as assistant) has no such mode and is left as it is."""
    if config.small_model:
        for role in (roles.generator, roles.assistant, roles.user):
            if isinstance(role, dspy.Module):
                role.small_model = True
    if config.generator_mode == "explore":
        roles.generator.explore = True
        roles.generator.max_explore_steps = config.explore_steps
    if not config.llm_judges:
        roles.task_validator.use_judge = False
        roles.trajectory_validator.use_judge = False


def _record_tokens(totals: dict[str, Any], role: str, usage: Usage) -> None:
    """Add the LM token usage DSPy tracked during one role call (when the LM reports it)."""
    for stats in (totals or {}).values():
        usage.add(role, calls=0, prompt_tokens=int(stats.get("prompt_tokens") or 0),
                  completion_tokens=int(stats.get("completion_tokens") or 0), cost=float(stats.get("cost") or 0.0))


def plan_tool_names(plan: PlanPair, domain: Domain) -> list[str] | None:
    """The domain's tools (either side) named as words in the plan's ``tool_pattern``, or None if it names none."""
    words = set(re.findall(r"\w+", plan.synthesis.tool_pattern))
    names = [spec.name for side in ("assistant", "user") for spec in domain.toolkit_for(side) if spec.name in words]
    return names or None


async def _draft(generator: TaskGenerator, domain: Domain, plan: PlanPair, entities: str, task_id: str,
                 feedback: list[str], allowed_tools: list[str] | None = None) -> Any:
    """Generate a task; a `DraftError` (content problem, not an LM failure) is returned, not raised,
    so it feeds the repair loop instead of the retry loop."""
    restrict = {"allowed_tools": allowed_tools} if allowed_tools is not None else {}
    try:
        return await generator.acall(domain=domain, plan=plan, entities=entities, task_id=task_id,
                                     feedback=feedback, **restrict)
    except DraftError as exc:
        return exc


