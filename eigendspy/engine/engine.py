"""DataEngine: plan -> generate -> validate (repair) -> filter -> roll out -> check -> accept -> reflect.

Every stage that can be checked by execution is checked by execution first (gold replay,
mutants, null policies, the task's checker on each dialogue) and by an LLM judge second. Rejected
items carry their reasons back into a bounded repair loop, and everything — accepted and
rejected, with reasons and blame — goes to the `RunStore`, so a run is auditable and resumable.

Determinism (what makes resume exact): tasks are generated concurrently but *filtered* in one
canonical order — (round, item, stream) — so which of two colliding tasks is the duplicate never
depends on timing, and every random choice is seeded from the work key, so a resumed run recomputes
an unfinished item exactly as an uninterrupted run would. The default ``pipelined`` schedule starts
an accepted task's rollouts as soon as it is filtered; ``waves`` (one item index at a time across
all streams) gives the same results with less overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eigendspy.core.domain import Domain
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord, Usage, Verdict
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.diversity import DiversityReport, diversity_report
from eigendspy.engine.filters import DuplicateFilter, HeldOutFilter
from eigendspy.engine.items import ItemWorker
from eigendspy.engine.store.store import RunStore, atomic_write_text
from eigendspy.lm.resilience import CallFailedError, LMUnavailableError

logger = logging.getLogger(__name__)
Failures = dict[int, list[tuple[str, Verdict]]]
"""Per stream: (work key, verdict) of every rejected item in the current round (sorted before reflection)."""


class EngineResult(BaseModel):
    run_dir: Path
    accepted_tasks: int
    accepted_dialogues: int
    rejected_tasks: int
    rejected_dialogues: int
    diversity: DiversityReport


class DataEngine:
    """Synthesizes verified tasks and accepted dialogues for one domain into a run directory.

    Args:
        domain: The domain to synthesize for.
        roles: The role modules.
        store: The run store (new or resumed).
        config: Engine settings.
        progress: Called with a short event string after every stored record (for progress UIs).
        worker: Who makes tasks and plays episodes: an in-process `ItemWorker` by default, or a pool with
            the same two async methods — local worker processes (`eigendspy.engine.processes.ProcessWorkerPool`,
            what ``synth`` starts at >= 16 streams, see `EngineConfig.workers`) or Ray actors
            (`eigendspy.engine.ray.RayWorkerPool`). The caller starts and closes the pool.
    """

    def __init__(self, domain: Domain, roles: Roles, store: RunStore, config: EngineConfig,
                 progress: Callable[[str, bool], None] | None = None, worker: Any = None) -> None:
        self.domain, self.roles, self.store, self.config = domain, roles, store, config
        self.progress = progress
        self.driver = ItemWorker(domain, roles, config)  # planner and reflector calls run here
        self.worker = worker if worker is not None else self.driver
        self.duplicates = DuplicateFilter(config.near_duplicate_jaccard)
        held_out = []
        if config.held_out_split and config.held_out_split in domain.splits():
            held_out = domain.tasks(config.held_out_split)
        self.held_out = HeldOutFilter(domain, held_out)
        self.plans_dir = store.root / "plans"
        self.plans_dir.mkdir(parents=True, exist_ok=True)
        self._dialogue_cache: dict[str, DialogueRecord] | None = None

    # -- plumbing ---------------------------------------------------------------------
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
            if cfg.schedule == "pipelined":
                await self._pipelined_round(r, plans, failures)
            else:
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
            pred = await self.driver.call(
                "planner", lambda: self.roles.planner.acall(domain=self.domain, n=cfg.streams, round=0), usage)
        except CallFailedError as exc:
            raise LMUnavailableError(f"the meta-planner could not produce plans ({exc.reason}); nothing to "
                                     "synthesize — check the planner's LM", role="planner") from exc
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
                    pred = await self.driver.call("reflector", lambda: self.roles.reflector.acall(
                        plan=plans[s], failures=verdicts, others=plans), Usage())
                    child = pred.plan
                except CallFailedError as exc:
                    logger.warning("reflection failed for stream %d (%s): keeping the plan", s, exc.reason)
                    child = plans[s].model_copy(update={"round": r + 1, "plan_id": f"{plans[s].plan_id}_k",
                                                        "parent_id": plans[s].plan_id})
            self._save_plan(name, child)
            return child

        return list(await asyncio.gather(*(one(s) for s in range(self.config.streams))))

    async def _wave(self, r: int, i: int, plans: list[PlanPair], failures: Failures) -> None:
        cfg = self.config
        done = self.store.done_keys("task")
        keys = [f"s{s}/r{r}/t{i}" for s in range(cfg.streams)]
        fresh = await asyncio.gather(*(self.worker.make_task(s, r, key, plans[s]) for s, key in enumerate(keys)
                                       if key not in done))
        by_key = {rec.work_key: rec for rec in fresh}
        stored = self._stored_tasks(done & set(keys))
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

    async def _pipelined_round(self, r: int, plans: list[PlanPair], failures: Failures) -> None:
        """All of a round's tasks are made concurrently; they are filtered in canonical order
        (item, stream) — the same order waves use, so results are identical — and each accepted
        task's rollouts start as soon as it is filtered, without waiting for a wave boundary."""
        cfg = self.config
        done = self.store.done_keys("task")
        keys = [(i, s, f"s{s}/r{r}/t{i}") for i in range(cfg.tasks_per_round) for s in range(cfg.streams)]
        stored = self._stored_tasks(done & {key for _, _, key in keys})
        made = {key: asyncio.ensure_future(self.worker.make_task(s, r, key, plans[s]))
                for _, s, key in keys if key not in done}
        rollouts: list[asyncio.Future[None]] = []
        try:
            for _, s, key in keys:
                rec = stored.get(key)
                if rec is None:
                    rec = self._filter(await made[key])
                    await self._store(rec)
                if not rec.accepted:
                    failures[s].append((key, Verdict(passed=False, reasons=rec.reasons, blame="task")))
                    continue
                rollouts += [asyncio.ensure_future(self._rollout(s, rec, k, failures))
                             for k in range(cfg.episodes_per_task)]
            await asyncio.gather(*rollouts)
        finally:
            for future in [*made.values(), *rollouts]:
                future.cancel()

    def _stored_tasks(self, keys: set[str]) -> dict[str, TaskRecord]:
        """Records of already-decided tasks (resume only: a fresh run never re-reads its shards)."""
        if not keys:
            return {}
        return {rec.work_key: rec for rec in self.store.iter_records("task") if rec.work_key in keys}

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

    async def _rollout(self, stream: int, rec: TaskRecord, trial: int, failures: Failures) -> None:
        key = f"{rec.work_key}/e{trial}"
        if self.store.has_key("dialogue", key):
            dialogue = self._stored_dialogue(key)
        else:
            dialogue = await self.worker.episode(rec, trial, key)
            await self._store(dialogue)
        if dialogue is not None and not dialogue.accepted:
            blame = dialogue.validator.blame if dialogue.validator else "none"
            failures[stream].append((key, Verdict(passed=False, reasons=dialogue.reasons, blame=blame)))

    def _stored_dialogue(self, key: str) -> DialogueRecord | None:
        if self._dialogue_cache is None:
            self._dialogue_cache = {rec.work_key: rec for rec in self.store.iter_records("dialogue")}
        return self._dialogue_cache.get(key)

    def _diversity(self) -> DiversityReport:
        plans = [PlanPair.model_validate_json(p.read_text()) for p in sorted(self.plans_dir.glob("*.json"))]
        records = [r for r in self.store.iter_records("task", accepted=True) if r.task is not None]
        accepted = [r.task for r in records]
        per_plan: dict[str, tuple[int, int]] = {}
        for d in self.store.iter_records("dialogue"):
            acc, tried = per_plan.get(d.plan_id or "-", (0, 0))
            per_plan[d.plan_id or "-"] = (acc + int(d.accepted), tried + 1)
        return diversity_report(plans, accepted, per_plan, {r.task.id: r.round for r in records})


def _order(work_key: str) -> tuple[int, int, int]:
    """Canonical wave order of a task work key ``s{s}/r{r}/t{i}``: round, item, stream."""
    s, r, i = (int(part[1:]) for part in work_key.split("/")[:3])
    return (r, i, s)
