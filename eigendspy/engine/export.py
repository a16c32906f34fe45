"""Hugging Face ``datasets`` builders for the data engine's accepted data: SFT (agent), SFT (user), RL tasks.

Why this module exists: the engine's records are an audit log (accepted and rejected, with
reasons); trainers want flat rows. Every chat row here is rendered by `eigendspy.core.render` —
``agent_chat`` for the assistant, ``user_chat`` for the user model — so SFT data is exactly
what GRPO rollouts and ``eval`` show the model (DESIGN.md, "The agent-facing contract").

Row formats (TRL's conversational format, ready for ``trl.SFTTrainer``):

* ``sft_agent`` / ``sft_user``: ``messages`` (OpenAI chat dicts, system prompt first), ``tools``
  (OpenAI function schemas), ``task_id``, ``domain``, ``reward``, ``work_key``.
* ``rl_tasks``: ``task_id``, ``domain``, ``task_json`` (tau2 task JSON, `task_from_row` reads it
  back), ``null_pass``, ``plan_id``, ``work_key``. There is deliberately no ``prompt`` column:
  the first user turn comes from the user simulator during the rollout, so the RL stage renders
  the prompt itself (with ``render.agent_chat``) from the task; GRPO callers map ``prompt`` to
  whatever their ``rollout_func`` needs (e.g. the task id).

Tool-call arguments are **dicts** (``render.training_messages``), not the JSON strings of the
OpenAI wire format: TRL's Qwen2.5 templates render them with ``arguments | tojson``, so a string
would be trained double-encoded (``"arguments": "{\\"id\\": ...}"``) and TRL's response parser,
which expects a JSON object, could not read the model's own calls back. Arrow would merge
differently-keyed argument dicts (and tool schemas) into one struct padded with nulls, so
``messages`` and ``tools`` are stored with ``datasets.Json`` features: each dict round-trips
exactly. An accepted dialogue whose tool call arguments are not a JSON object (a model's malformed
call) cannot be rendered faithfully and is skipped, and counted in the card. `export_all` also re-runs
the deterministic dialogue pre-checks (`eigendspy.engine.export_checks`) and leaves out of both SFT sets
any accepted dialogue with a decisive finding, so no exported row fails them.

A run directory is read only through `RunStore` (opened read-only), the one reader of its format.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Json, List, Value
from pydantic import BaseModel, Field

from eigendspy.core.domain import Domain
from eigendspy.core.records import DialogueRecord, TaskRecord
from eigendspy.core.render import ChatPrompt, MalformedToolCall, agent_chat, training_messages, user_chat
from eigendspy.core.task import Task
from eigendspy.engine.dataset_card import DatasetCard, StageYield
from eigendspy.engine.export_checks import count_kinds, screen_dialogues
from eigendspy.engine.store.store import RunStore

logger = logging.getLogger(__name__)

DomainSource = Mapping[str, Domain] | Callable[[str], Domain]

CHAT_FEATURES = Features({"messages": List(Json()), "tools": List(Json()), "task_id": Value("string"),
                          "domain": Value("string"), "reward": Value("float64"), "work_key": Value("string")})
RL_FEATURES = Features({"task_id": Value("string"), "domain": Value("string"), "task_json": Value("string"),
                        "null_pass": Value("bool"), "plan_id": Value("string"), "work_key": Value("string"),
                        "domain_options": Value("string"), "data_dir": Value("string"), "db_hash": Value("string")})
"""``rl_tasks`` columns. The last three are the provenance (`Domain.provenance`): the world the task's gold
solution was validated against, which GRPO checks before it trusts the task as a reward."""
DATASET_NAMES = ("sft_agent", "sft_user", "rl_tasks")


def _resolver(domains: DomainSource) -> Callable[[str], Domain]:
    if isinstance(domains, Mapping):
        def lookup(name: str) -> Domain:
            if name not in domains:
                raise KeyError(f"no domain {name!r} given to export; known: {sorted(domains)}")
            return domains[name]
        return lookup
    if not callable(domains):
        raise TypeError("domains must be a mapping of name -> Domain or a callable name -> Domain")
    return functools.cache(domains)  # a loader such as get_domain builds each domain once


def _chat_rows(
    records: Iterable[DialogueRecord], render: Callable[[DialogueRecord], ChatPrompt]
) -> tuple[list[dict[str, Any]], int]:
    """Rows for the accepted records, and how many accepted ones were skipped as malformed."""
    rows, skipped = [], 0
    for record in records:
        if not record.accepted:
            continue
        prompt = render(record)
        try:
            messages = training_messages(prompt)
        except MalformedToolCall as exc:
            skipped += 1
            logger.warning("export: skipping accepted dialogue %s: %s", record.work_key, exc)
            continue
        rows.append({"messages": messages, "tools": list(prompt.tools), "task_id": record.task_id,
                     "domain": record.domain, "reward": float(record.reward), "work_key": record.work_key})
    return rows, skipped


def _dataset(rows: list[dict[str, Any]], features: Features) -> Dataset:
    return Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def _agent_rows(records: Iterable[DialogueRecord], domains: DomainSource,
                instructions: str | None) -> tuple[list[dict[str, Any]], int]:
    domain_of = _resolver(domains)

    def render(record: DialogueRecord) -> ChatPrompt:
        domain = domain_of(record.domain)
        return agent_chat(domain.policy, domain.tool_schemas("assistant"), record.messages, instructions=instructions)
    return _chat_rows(records, render)


def _user_rows(records: Iterable[DialogueRecord], domains: DomainSource, tasks: Mapping[str, Task] | None,
               guidelines: str | None) -> tuple[list[dict[str, Any]], int]:
    domain_of = _resolver(domains)
    tasks = tasks or {}

    def render(record: DialogueRecord) -> ChatPrompt:
        domain = domain_of(record.domain)
        task = tasks.get(record.task_id)
        if task is None:
            try:
                task = domain.task(record.task_id)
            except KeyError:
                raise KeyError(f"dialogue {record.work_key}: task {record.task_id!r} is neither among the "
                               f"exported tasks nor in domain {domain.name!r}") from None
        return user_chat(task.user_scenario.render(), record.messages, tools=domain.tool_schemas("user"),
                         guidelines=guidelines)
    return _chat_rows(records, render)


def sft_agent_dataset(
    records: Iterable[DialogueRecord], domains: DomainSource, *, instructions: str | None = None
) -> Dataset:
    """The assistant SFT set: accepted dialogues, rendered by ``render.agent_chat``.

    Args:
        records: Dialogue records; rejected ones are left out.
        domains: ``{name: Domain}`` or a callable such as ``eigendspy.domains.get_domain``.
        instructions: An evolved assistant instruction (recorded artifact); default tau2's form.
    """
    return _dataset(_agent_rows(records, domains, instructions)[0], CHAT_FEATURES)


def sft_user_dataset(
    records: Iterable[DialogueRecord],
    domains: DomainSource,
    tasks: Mapping[str, Task] | None = None,
    *,
    guidelines: str | None = None,
) -> Dataset:
    """The user-model SFT set: accepted dialogues seen from the user's side (roles flipped).

    Args:
        records: Dialogue records; rejected ones are left out.
        domains: ``{name: Domain}`` or a callable; gives the user-side tool schemas.
        tasks: ``{task_id: Task}`` for the scenarios; tasks missing here are looked up in the domain.
        guidelines: Replacement user guidelines (default tau2's form).
    """
    return _dataset(_user_rows(records, domains, tasks, guidelines)[0], CHAT_FEATURES)


def rl_task_dataset(task_records: Iterable[TaskRecord], domain: str | Mapping[str, str] | None = None,
                    provenance: Mapping[str, Mapping[str, Any]] | None = None) -> Dataset:
    """The RL task set: one row per accepted task, the task kept whole as tau2 JSON.

    Args:
        task_records: Task records; rejected ones (and records without a task) are left out.
        domain: The domain name of every row, or ``{task_id: name}``; when absent the structured
            scenario's ``domain`` is used (a `TaskRecord` itself names no domain).
        provenance: ``{domain name: Domain.provenance()}``; a row of a domain missing here records none.
    """
    rows = []
    for record in task_records:
        if not record.accepted or record.task is None:
            continue
        task = record.task
        name = domain.get(task.id) if isinstance(domain, Mapping) else domain
        if name is None and not isinstance(task.user_scenario.instructions, str):
            name = task.user_scenario.instructions.domain
        if name is None:
            raise ValueError(f"task {task.id!r}: no domain given and its scenario names none; pass domain=")
        origin = (provenance or {}).get(name) or {}
        rows.append({"task_id": task.id, "domain": name, "task_json": json.dumps(task.to_tau2()),
                     "null_pass": record.null_pass, "plan_id": record.plan.plan_id if record.plan else None,
                     "work_key": record.work_key,
                     "domain_options": json.dumps(origin["domain_options"], sort_keys=True) if origin else None,
                     "data_dir": origin.get("data_dir"), "db_hash": origin.get("db_hash")})
    return _dataset(rows, RL_FEATURES)


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The `Task` of an ``rl_tasks`` row (the inverse of the export)."""
    return Task.model_validate(json.loads(row["task_json"]))


class ExportResult(BaseModel):
    """Where `export_all` wrote each artifact, with row counts and the card."""

    out_dir: Path
    paths: dict[str, Path]
    counts: dict[str, int]
    card: DatasetCard
    skipped: list[str] = Field(default_factory=list, description="Bad stored lines left out: file, line, reason")
    rejected_at_export: list[str] = Field(default_factory=list, description=(
        "Accepted dialogues the export's pre-checks left out: task_id work_key: kind: reason"))


def _provenance(domains: DomainSource, names: set[str]) -> dict[str, dict[str, Any]]:
    domain_of = _resolver(domains)
    return {name: domain_of(name).provenance() for name in sorted(names)}


def _dedupe(records: Iterable[Any]) -> list[Any]:
    """One record per ``work_key`` (the first wins, as in the run store), so duplicates count once."""
    seen: dict[str, Any] = {}
    for r in records:
        seen.setdefault(r.work_key, r)
    return list(seen.values())


def export_all(
    task_records: Iterable[TaskRecord],
    dialogue_records: Iterable[DialogueRecord],
    domains: DomainSource,
    out_dir: str | Path,
    card_extra: dict[str, Any] | None = None,
    *,
    prechecks: bool = True,
) -> ExportResult:
    """Write the three datasets (``save_to_disk``), ``README.md`` and ``card.json`` under ``out_dir``.

    Args:
        task_records: All task records of the run (accepted and rejected: the card counts both).
        dialogue_records: All dialogue records of the run.
        domains: ``{name: Domain}`` or a callable name -> Domain.
        out_dir: Output folder (created; existing datasets in it are overwritten).
        card_extra: Optional card inputs: ``run_id``, ``summary`` (``{stage: {"accepted": a,
            "total": t}}``), ``plan_cells_covered``, ``gold_action_jaccard``; other keys are kept in
            the card's ``extra``. Without ``plan_cells_covered`` it is counted from accepted tasks' plans.
        prechecks: Re-run the deterministic dialogue pre-checks on each accepted dialogue
            (`export_checks.screen_dialogues`) and leave one with a decisive finding out of both SFT
            sets; it is listed in the result's and counted in the card's ``rejected_at_export``.
    """
    tasks_in, dialogues = _dedupe(task_records), _dedupe(dialogue_records)
    extra = dict(card_extra or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tasks = {r.task.id: r.task for r in sorted(tasks_in, key=lambda r: r.accepted) if r.task is not None}
    domain_of = _resolver(domains)  # one resolver: a loader builds each domain once for the whole export
    exported, rejected = screen_dialogues(dialogues, tasks, domain_of) if prechecks else (dialogues, [])
    agent_rows, skipped = _agent_rows(exported, domain_of, None)
    user_rows, _ = _user_rows(exported, domain_of, tasks, None)
    task_domain = {r.task_id: r.domain for r in dialogues}
    if isinstance(domains, Mapping) and len(domains) == 1:
        only = next(iter(domains))
        task_domain = {t: task_domain.get(t, only) for t in tasks}
    sets = {
        "sft_agent": _dataset(agent_rows, CHAT_FEATURES),
        "sft_user": _dataset(user_rows, CHAT_FEATURES),
        "rl_tasks": rl_task_dataset(tasks_in, task_domain, _provenance(domain_of, set(task_domain.values()))),
    }
    paths: dict[str, Path] = {}
    for name, ds in sets.items():
        # datasets 5.2 writes no shard for an empty dataset and then cannot load it back: force one
        ds.save_to_disk(str(out / name), num_shards=None if len(ds) else 1)
        paths[name] = out / name
    counts = {name: len(ds) for name, ds in sets.items()}

    cells = {r.plan.synthesis.cell for r in tasks_in if r.accepted and r.plan is not None}
    rewards = [row["reward"] for row in agent_rows]
    card = DatasetCard(
        run_id=extra.pop("run_id", None),
        domains=sorted({*sets["rl_tasks"]["domain"], *(row["domain"] for row in agent_rows)}),
        counts=counts,
        tasks_total=len(tasks_in),
        tasks_accepted=sum(r.accepted for r in tasks_in),
        dialogues_total=len(dialogues),
        dialogues_accepted=sum(r.accepted for r in dialogues),
        rejected_by_stage=dict(Counter(r.stage.value for r in [*tasks_in, *dialogues] if not r.accepted)),
        skipped_malformed=skipped,
        rejected_at_export=count_kinds(rejected),
        yields={k: StageYield.model_validate(v) for k, v in (extra.pop("summary", None) or {}).items()},
        plan_cells_covered=extra.pop("plan_cells_covered", len(cells) if cells else None),
        gold_action_jaccard=extra.pop("gold_action_jaccard", None),
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        extra=extra,
    )
    paths["readme"] = out / "README.md"
    paths["card"] = out / "card.json"
    paths["readme"].write_text(card.to_markdown())
    paths["card"].write_text(card.model_dump_json(indent=2))
    logger.info("export: %s -> %s", counts, out)
    return ExportResult(out_dir=out, paths=paths, counts=counts, card=card,
                        rejected_at_export=[r.line() for r in rejected])


def read_records(run_dir: str | Path) -> tuple[list[TaskRecord], list[DialogueRecord]]:
    """Task and dialogue records of a run directory, as its `RunStore` reads them.

    The store is the one reader of its format, so export sees exactly what a resumed run sees: shards
    in write order, the first record of a re-written work key only, and no torn last line (a line a
    live or killed writer has not finished). The store is opened read-only: nothing in the run
    directory is changed and no lock is taken, so a run can be exported while it is still going.

    Raises:
        FileNotFoundError: if ``run_dir`` has no ``manifest.json`` (it is not a run directory).
    """
    with RunStore.open(run_dir, read_only=True) as store:
        return list(store.task_records()), list(store.dialogue_records())


def export_run(
    run_dir: str | Path,
    domains: DomainSource,
    out_dir: str | Path | None = None,
    card_extra: dict[str, Any] | None = None,
    *,
    prechecks: bool = True,
) -> ExportResult:
    """`export_all` over a run directory's records (default output: ``<run_dir>/export``).

    Records are read as in `read_records`. The run id is ``card_extra["run_id"]``, else the manifest's
    ``run_id``, else the folder name. Stored lines the store rejected (not UTF-8, not JSON, failing
    their checksum or schema) are left out and listed in ``skipped``, so a damaged line never stops
    an export nor enters a dataset unnoticed. ``prechecks`` is passed to `export_all`.

    Raises:
        FileNotFoundError: if ``run_dir`` has no ``manifest.json`` (it is not a run directory).
    """
    run_dir = Path(run_dir)
    with RunStore.open(run_dir, read_only=True) as store:
        tasks, dialogues = list(store.task_records()), list(store.dialogue_records())
        run_id = store.manifest.run_id or run_dir.name
        skipped = store.corruption_report()
    extra = {"run_id": run_id, **(card_extra or {})}
    result = export_all(tasks, dialogues, domains, out_dir or run_dir / "export", card_extra=extra,
                        prechecks=prechecks)
    for line in skipped:
        logger.warning("export skipped %s", line)
    return result.model_copy(update={"skipped": skipped})


__all__ = [
    "CHAT_FEATURES", "DATASET_NAMES", "RL_FEATURES", "DatasetCard", "DomainSource", "ExportResult", "StageYield",
    "export_all", "export_run", "read_records", "rl_task_dataset", "sft_agent_dataset", "sft_user_dataset",
    "task_from_row",
]
