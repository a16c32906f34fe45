"""DataEngine: plan -> generate -> validate (repair) -> filter -> roll out -> check -> accept -> reflect.

Every stage that can be checked by execution is checked by execution first (gold replay,
mutants, null policies, the task's checker on each dialogue) and by an LLM judge second. Rejected
items carry their reasons back into a bounded repair loop, and everything — accepted and
rejected, with reasons and blame — goes to the `RunStore`, so a run is auditable and resumable.

Determinism (what makes resume exact): work advances in *waves*. Wave (round r, item i)
generates the tasks of all streams concurrently, then filters them in stream order (so which of
two colliding tasks is the duplicate never depends on timing), then rolls out all accepted tasks
concurrently. Every random choice is seeded from the work key, so a resumed run recomputes an
unfinished item exactly as an uninterrupted run would.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, ConfigDict

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.reflector import Reflector
from eigendspy.agents.task_generator import DraftError, TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import TrajectoryValidator
from eigendspy.checkers import Checker
from eigendspy.diversity import DiversityReport, diversity_report
from eigendspy.domain import Domain
from eigendspy.entities import sample_entities
from eigendspy.orchestrator import EpisodeConfig, Orchestrator
from eigendspy.participants import Participant, Turn, TurnContext
from eigendspy.plans import PlanPair
from eigendspy.records import DialogueRecord, Stage, TaskRecord, Usage, Verdict
from eigendspy.resilience import CallFailedError, CircuitBreaker, LMUnavailableError, call_with_retries
from eigendspy.store import RunStore, atomic_write_text
from eigendspy.task import Task
from eigendspy.task_filters import DuplicateFilter, HeldOutFilter
from eigendspy.trajectory import Message

logger = logging.getLogger(__name__)
Failures = dict[int, list[tuple[str, Verdict]]]
"""Per stream: (work key, verdict) of every rejected item in the current round (sorted before reflection)."""


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


class EngineResult(BaseModel):
    run_dir: Path
    accepted_tasks: int
    accepted_dialogues: int
    rejected_tasks: int
    rejected_dialogues: int
    diversity: DiversityReport


class _Retrying:
    """A participant wrapper that retries LM failures before the orchestrator sees them."""

    def __init__(self, inner: Participant, role: str, engine: DataEngine, usage: Usage) -> None:
        self.inner, self.role, self.engine, self.usage = inner, role, engine, usage

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Turn | Message:
        return await self.engine._call(self.role, lambda: self.inner.respond(messages, ctx), self.usage)


class DataEngine:
    """Synthesizes verified tasks and accepted dialogues for one domain into a run directory.

    Args:
        domain: The domain to synthesize for.
        roles: The role modules.
        store: The run store (new or resumed).
        config: Engine settings.
        progress: Called with a short event string after every stored record (for progress UIs).
    """

    def __init__(self, domain: Domain, roles: Roles, store: RunStore, config: EngineConfig,
                 progress: Callable[[str, bool], None] | None = None) -> None:
        self.domain, self.roles, self.store, self.config = domain, roles, store, config
        self.progress = progress
        self.breaker = CircuitBreaker(config.breaker_threshold)
        self.semaphore = asyncio.Semaphore(config.concurrency)
        self.duplicates = DuplicateFilter()
        held_out = []
        if config.held_out_split and config.held_out_split in domain.splits():
            held_out = domain.tasks(config.held_out_split)
        self.held_out = HeldOutFilter(domain, held_out)
        self.plans_dir = store.root / "plans"
        self.plans_dir.mkdir(parents=True, exist_ok=True)
        self._dialogue_cache: dict[str, DialogueRecord] | None = None

    # -- plumbing ---------------------------------------------------------------------
    async def _call(self, role: str, fn: Callable[[], Awaitable[Any]], usage: Usage) -> Any:
        async def counted() -> Any:
            usage.add(role)
            async with self.semaphore:
                return await fn()

        return await call_with_retries(counted, role=role, attempts=self.config.retries,
                                       base_delay=self.config.retry_delay_s, breaker=self.breaker)

    def _emit(self, event: str, ok: bool) -> None:
        if self.progress is not None:
            self.progress(event, ok)

    async def _store(self, record: TaskRecord | DialogueRecord) -> None:
        await self.store.aappend(record)
        self._emit(f"{record.kind}:{record.stage.value}", record.accepted)

    def _save_plan(self, name: str, plan: PlanPair) -> None:
        atomic_write_text(self.plans_dir / f"{name}.json", plan.model_dump_json(indent=2))

    def _load_plan(self, name: str) -> PlanPair | None:
        path = self.plans_dir / f"{name}.json"
        return PlanPair.model_validate_json(path.read_text()) if path.exists() else None

    # -- the run ------------------------------------------------------------------------
    async def run(self) -> EngineResult:
        cfg = self.config
        self._replay_accepted_tasks()
        plans = await self._initial_plans()
        for r in range(cfg.rounds):
            failures: Failures = {s: [] for s in range(cfg.streams)}
            for i in range(cfg.tasks_per_round):
                await self._wave(r, i, plans, failures)
            if r + 1 < cfg.rounds:
                plans = await self._reflect(r, plans, failures)
        self.store.write_summary()
        report = self._diversity()
        atomic_write_text(self.store.root / "diversity.json", report.model_dump_json(indent=2))
        kinds = self.store.summary().kinds
        tasks, dialogues = kinds.get("task"), kinds.get("dialogue")
        return EngineResult(
            run_dir=self.store.root,
            accepted_tasks=tasks.accepted if tasks else 0, rejected_tasks=tasks.rejected if tasks else 0,
            accepted_dialogues=dialogues.accepted if dialogues else 0,
            rejected_dialogues=dialogues.rejected if dialogues else 0,
            diversity=report,
        )

    def _replay_accepted_tasks(self) -> None:
        """On resume, rebuild the duplicate filter from stored accepted tasks in canonical order."""
        records = sorted(self.store.iter_records("task", accepted=True), key=lambda rec: _order(rec.work_key))
        for rec in records:
            if rec.task is not None:
                self.duplicates.add(rec.task)

    async def _initial_plans(self) -> list[PlanPair]:
        cfg = self.config
        stored = [self._load_plan(f"r0_s{s}") for s in range(cfg.streams)]
        if all(stored):
            return stored  # type: ignore[return-value]
        usage = Usage()
        try:
            pred = await self._call("planner", lambda: self.roles.planner.acall(domain=self.domain, n=cfg.streams,
                                                                                   round=0), usage)
        except CallFailedError as exc:
            raise LMUnavailableError(f"the meta-planner could not produce plans ({exc.reason}); nothing to "
                                     "synthesize — check the planner's LM") from exc
        plans: list[PlanPair] = list(pred.plans)
        if not plans:
            raise RuntimeError("the meta-planner produced no usable plan; check its LM")
        out = []
        for s in range(cfg.streams):
            plan = stored[s] or plans[s % len(plans)]
            if s >= len(plans):  # fewer plans than streams: reuse, but keep plan ids distinct
                plan = plan.model_copy(update={"plan_id": f"{plan.plan_id}_s{s}"})
            self._save_plan(f"r0_s{s}", plan)
            out.append(plan)
        return out

    async def _reflect(self, r: int, plans: list[PlanPair], failures: Failures
                       ) -> list[PlanPair]:
        async def one(s: int) -> PlanPair:
            name = f"r{r + 1}_s{s}"
            stored = self._load_plan(name)
            if stored is not None:
                return stored
            verdicts = [v for _, v in sorted(failures[s], key=lambda kv: kv[0])]
            if not verdicts:
                child = plans[s].model_copy(update={"round": r + 1, "plan_id": f"{plans[s].plan_id}_k",
                                                    "parent_id": plans[s].plan_id})
            else:
                try:
                    pred = await self._call("reflector", lambda: self.roles.reflector.acall(
                        plan=plans[s], failures=verdicts, others=plans), Usage())
                    child = pred.plan
                except CallFailedError as exc:
                    logger.warning("reflection failed for stream %d (%s): keeping the plan", s, exc.reason)
                    child = plans[s].model_copy(update={"round": r + 1, "plan_id": f"{plans[s].plan_id}_k"})
            self._save_plan(name, child)
            return child

        return list(await asyncio.gather(*(one(s) for s in range(self.config.streams))))

    async def _wave(self, r: int, i: int, plans: list[PlanPair], failures: Failures) -> None:
        cfg = self.config
        done = self.store.done_keys("task")
        keys = [f"s{s}/r{r}/t{i}" for s in range(cfg.streams)]
        fresh = await asyncio.gather(*(self._make_task(s, r, key, plans[s]) for s, key in enumerate(keys)
                                       if key not in done))
        by_key = {rec.work_key: rec for rec in fresh}
        stored = {rec.work_key: rec for rec in self.store.iter_records("task") if rec.work_key in set(keys)}
        rollouts = []
        for s, key in enumerate(keys):
            rec = stored.get(key) or by_key.get(key)
            if rec is None:
                continue
            if key in by_key:  # decided now: apply the order-dependent filters, in stream order
                rec = self._filter(rec)
                await self._store(rec)
            if not rec.accepted:
                failures[s].append((key, Verdict(passed=False, reasons=rec.reasons, blame="task")))
                continue
            rollouts += [self._rollout(s, rec, k, failures) for k in range(cfg.episodes_per_task)]
        await asyncio.gather(*rollouts)

    def _filter(self, rec: TaskRecord) -> TaskRecord:
        if not rec.accepted or rec.task is None:
            return rec
        for decision in (self.duplicates.check(rec.task), self.held_out.check(rec.task)):
            if decision.rejected:
                return rec.model_copy(update={"accepted": False, "stage": Stage.FILTER_TASK,
                                              "reasons": [decision.reason]})
        if self.config.reject_null_pass and rec.null_pass:
            return rec.model_copy(update={"accepted": False, "stage": Stage.FILTER_TASK, "reasons": [
                "a null policy (do nothing / transfer / reads only) passes this task's checker: the reward is "
                "gameable; add an assertion a null policy fails (e.g. communicate_info)"]})
        self.duplicates.add(rec.task)
        return rec

    async def _make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> TaskRecord:
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
                pred = await self._call("generator", lambda e=entities, f=list(feedback): _draft(
                    self.roles.generator, self.domain, plan, e, task_id, f), usage)
            except CallFailedError as exc:
                return TaskRecord(**base, accepted=False, stage=Stage.GENERATE, reasons=[exc.reason],
                                  repair_rounds=attempt)
            if isinstance(pred, DraftError):
                feedback = list(pred.reasons)
                continue
            task: Task = pred.task
            try:
                verdict_pred = await self._call("task_validator", lambda t=task: self.roles.task_validator.acall(
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

    async def _rollout(self, stream: int, rec: TaskRecord, trial: int, failures: Failures
                       ) -> None:
        key = f"{rec.work_key}/e{trial}"
        if key in self.store.done_keys("dialogue"):
            stored = self._stored_dialogue(key)
            if stored is not None and not stored.accepted:
                blame = stored.validator.blame if stored.validator else "none"
                failures[stream].append((key, Verdict(passed=False, reasons=stored.reasons, blame=blame)))
            return
        cfg, task = self.config, rec.task
        usage = Usage()
        orch = Orchestrator(
            self.domain, _Retrying(self.roles.assistant, "assistant", self, usage),
            _Retrying(self.roles.user, "user", self, usage),
            config=EpisodeConfig(max_steps=cfg.max_steps, max_errors=cfg.max_errors, seed=cfg.seed),
            checker_factory=lambda t: Checker(self.domain, t, exclude_nl=True),
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
                pred = await self._call("trajectory_validator", lambda: self.roles.trajectory_validator.acall(
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
            if not accepted:
                failures[stream].append((key, Verdict(passed=False, reasons=reasons, blame=verdict.blame)))
        await self._store(dialogue)

    def _stored_dialogue(self, key: str) -> DialogueRecord | None:
        if self._dialogue_cache is None:
            self._dialogue_cache = {rec.work_key: rec for rec in self.store.iter_records("dialogue")}
        return self._dialogue_cache.get(key)

    def _diversity(self) -> DiversityReport:
        plans = [PlanPair.model_validate_json(p.read_text()) for p in sorted(self.plans_dir.glob("*.json"))]
        accepted = [r.task for r in self.store.iter_records("task", accepted=True) if r.task is not None]
        per_plan: dict[str, tuple[int, int]] = {}
        for d in self.store.iter_records("dialogue"):
            acc, tried = per_plan.get(d.plan_id or "-", (0, 0))
            per_plan[d.plan_id or "-"] = (acc + int(d.accepted), tried + 1)
        return diversity_report(plans, accepted, per_plan)


async def _draft(generator: TaskGenerator, domain: Domain, plan: PlanPair, entities: str, task_id: str,
                 feedback: list[str]) -> Any:
    """Generate a task; a `DraftError` (content problem, not an LM failure) is returned, not raised,
    so it feeds the repair loop instead of the retry loop."""
    try:
        return await generator.acall(domain=domain, plan=plan, entities=entities, task_id=task_id,
                                     feedback=feedback)
    except DraftError as exc:
        return exc


def _order(work_key: str) -> tuple[int, int, int]:
    """Canonical wave order of a task work key ``s{s}/r{r}/t{i}``: round, item, stream."""
    s, r, i = (int(part[1:]) for part in work_key.split("/")[:3])
    return (r, i, s)
