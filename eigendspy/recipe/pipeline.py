"""`run_recipe`: synthesize -> split -> SFT (agent, user) -> GRPO columns -> pass^k of every column -> report.

Each step is a resumable stage (`eigendspy.recipe.stages`) keyed by the settings it reads and by the
stages it consumes, so an interrupted run continues where it stopped and a changed setting reruns exactly
the stages that depend on it. The report (``recipe.json`` + ``recipe.png``) is rebuilt from the stage
markers on every run.

Example::

    from eigendspy.recipe import PRESETS, run_recipe

    result = run_recipe(PRESETS["cpu"], "runs/recipe-cpu")
    for row in result.table():
        print(row)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eigendspy.engine.config import Roles
from eigendspy.recipe.columns import ColumnPlan, column_plans
from eigendspy.recipe.config import RecipeConfig
from eigendspy.recipe.evaluation import HeldOut, evaluate_agent
from eigendspy.recipe.report import build_result
from eigendspy.recipe.results import RecipeResult
from eigendspy.recipe.stages import StageMarker, StageStore

RESULT, PLOT = "recipe.json", "recipe.png"


def resolve_model(config: RecipeConfig) -> str:
    """The base model folder: ``config.model``, else the embedded SmolLM2-135M-Instruct's cached folder."""
    if config.model:
        return config.model
    from eigendspy.lm.local.fetch import dequantized_dir

    return str(dequantized_dir())


def tau2_mock_dir(config: RecipeConfig) -> Path | None:
    """tau2's mock domain folder for the second held-out set, or None (then that set is skipped)."""
    if not config.split.tau2 or config.domain != "mock":
        return None
    candidates = [config.tau2_data] if config.tau2_data else []
    if os.environ.get("EIGENDSPY_TAU2_SHARED"):
        candidates.append(str(Path(os.environ["EIGENDSPY_TAU2_SHARED"]) / "mock"))
    candidates += [str(p / "shared" / "tau2" / "mock") for p in (Path.cwd(), *Path.cwd().parents)]
    return next((Path(c) for c in candidates if (Path(c) / "tasks.json").is_file()), None)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's CPU threads for the run, restored afterwards (process-wide: tests run in-process)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_recipe(config: RecipeConfig, out: str | Path, *, roles: Roles | None = None,
               progress: Callable[[str, str], None] | None = None,
               on_record: Callable[[str, bool], None] | None = None) -> RecipeResult:
    """Run (or resume) the whole recipe into ``out`` and write ``recipe.json`` and ``recipe.png`` there.

    Args:
        config: The recipe (e.g. ``PRESETS["cpu"]``).
        out: Output folder; one sub-folder per stage.
        roles: Synthesis roles to use as they are (needed for ``synthesis_lm = "scripted"``); the recipe puts
            in its planner and teacher.
        progress: Called with ``(stage, "skip" | "start" | "done")``.
        on_record: Called with the data engine's ``(event, accepted)`` for every stored record.
    """
    from eigendspy.domains import get_domain

    started = time.perf_counter()
    out = Path(out)
    stages = StageStore(out, progress)
    model = resolve_model(config)
    domain = get_domain(config.domain, **config.domain_options)
    tau2_dir = tau2_mock_dir(config)
    base = {"model": model, "seed": config.seed}
    markers: dict[str, StageMarker] = {}
    with _threads(config.threads):
        markers["synthesize"] = stages.run(
            "synthesize", {"domain": config.domain, "domain_options": config.domain_options, "teacher": config.teacher,
                           "synthesis_lm": config.synthesis_lm, "seed": config.seed,
                           "synthesis": config.synthesis.model_dump()}, [],
            lambda folder: _synthesize(config, folder, domain, roles, on_record))
        markers["split"] = stages.run(
            "split", {"split": config.split.model_dump(), "tau2": str(tau2_dir) if tau2_dir else None, **base},
            [markers["synthesize"]], lambda folder: _split(config, folder, markers["synthesize"], domain, tau2_dir))
        export = Path(markers["split"].result["export_dir"])
        plans = column_plans(config)
        if any(p.source for p in plans):
            markers["sft_agent"] = _sft(stages, config, model, export, markers["split"], "agent")
        if any(p.needs_sft_user for p in plans) or (config.sft.user_model and any(p.grpo for p in plans)):
            markers["sft_user"] = _sft(stages, config, model, export, markers["split"], "user")
        for plan in plans:
            if plan.grpo:
                markers[plan.source] = _grpo(stages, config, plan, model, export, markers)
        held_out = _held_out(markers["synthesize"], markers["split"], domain, tau2_dir)
        markers["eval_teacher"] = stages.run(
            "eval_teacher", {"eval": config.eval.model_dump(), "confirm_writes": config.synthesis.confirm_writes},
            [markers["split"]], lambda folder: _teacher_ceiling(config, held_out, folder))
        for plan in plans:
            agent = f"model:{model}" if plan.source is None else f"model:{markers[plan.source].result['adapter_dir']}"
            upstream = [markers["split"]] + ([markers[plan.source]] if plan.source else [])
            markers[f"eval_{plan.column}"] = stages.run(
                f"eval_{plan.column}", {"eval": config.eval.model_dump(), "agent": plan.column, **base}, upstream,
                lambda folder, a=agent, c=plan.column: evaluate_agent(a, held_out, config.eval, config.seed, c,
                                                                      folder))
    result = build_result(config, model, markers, plans, time.perf_counter() - started)
    from eigendspy.recipe.plot import plot_recipe

    result = result.model_copy(update={"plot": str(plot_recipe(result, out / PLOT))})
    result.to_json(out / RESULT)
    return result


def _teacher_ceiling(config: RecipeConfig, held_out: list[HeldOut], folder: Path) -> dict[str, Any]:
    """The gold teacher against the evaluation user: the best score this user allows (deterministic: 1 trial)."""
    from eigendspy.agents import GoldTeacher

    settings = config.eval.model_copy(update={"trials": 1, "max_tasks": config.eval.max_tasks})
    return evaluate_agent(GoldTeacher(confirm_writes=config.synthesis.confirm_writes), held_out, settings,
                          config.seed, "teacher", folder)


def _synthesize(config: RecipeConfig, folder: Path, domain: Any, roles: Roles | None,
                on_record: Callable[[str, bool], None] | None) -> dict[str, Any]:
    from eigendspy.recipe.synthesis import run_synthesis

    result = run_synthesis(config, folder, domain, roles, on_record)
    if result["accepted_dialogues"] == 0:
        raise RuntimeError(f"synthesis accepted no dialogue ({result}); see {folder / 'run'} (eigendspy inspect)")
    return result


def _split(config: RecipeConfig, folder: Path, synth: StageMarker, domain: Any, tau2_dir: Path | None
           ) -> dict[str, Any]:
    """Split the accepted tasks by plan cell and export the train split's dialogues and tasks."""
    from eigendspy.engine.export import export_all, read_records
    from eigendspy.recipe.split import split_by_cell

    tasks, dialogues = read_records(synth.result["run_dir"])
    tau2 = _tau2_domain(tau2_dir)
    report = split_by_cell(tasks, config.split, config.seed, tau2.tasks() if tau2 is not None else [])
    train = set(report.train_task_ids)
    train_tasks = [r for r in tasks if r.task is not None and r.task.id in train]
    train_dialogues = [d for d in dialogues if d.task_id in train]
    exported = export_all(train_tasks, train_dialogues, {domain.name: domain}, folder / "export",
                          card_extra={"run_id": "recipe-train-split"})
    if not exported.counts.get("sft_agent"):
        raise RuntimeError(f"the train split holds no accepted dialogue to train on ({exported.counts})")
    (folder / "split.json").write_text(report.model_dump_json(indent=2))
    return {"export_dir": str(folder / "export"), "counts": exported.counts, **report.model_dump(mode="json")}


def _tau2_domain(tau2_dir: Path | None) -> Any:
    if tau2_dir is None:
        return None
    from eigendspy.domains import get_domain

    return get_domain("mock", data_dir=tau2_dir)


def _held_out(synth: StageMarker, split: StageMarker, domain: Any, tau2_dir: Path | None) -> list[HeldOut]:
    from eigendspy.engine.export import read_records

    wanted = split.result["held_out_task_ids"]
    by_id = {r.task.id: r.task for r in read_records(synth.result["run_dir"])[0] if r.task is not None and r.accepted}
    sets = [HeldOut(name="synth", domain=domain, tasks=[by_id[t] for t in wanted])]
    tau2 = _tau2_domain(tau2_dir)
    if tau2 is not None and split.result["tau2_task_ids"]:
        keep = set(split.result["tau2_task_ids"])
        sets.append(HeldOut(name="tau2", domain=tau2, tasks=[t for t in tau2.tasks() if t.id in keep]))
    return sets


def _sft(stages: StageStore, config: RecipeConfig, model: str, export: Path, split: StageMarker,
         side: str) -> StageMarker:
    from eigendspy.recipe.training import sft_run

    settings = {"model": model, "seed": config.seed, "sft": config.sft.model_dump(exclude={"user_model"})}
    return stages.run(f"sft_{side}", settings, [split], lambda folder: sft_run(config, model, export, folder, side))


def _grpo(stages: StageStore, config: RecipeConfig, plan: ColumnPlan, model: str, export: Path,
          markers: dict[str, StageMarker]) -> StageMarker:
    from eigendspy.recipe.training import grpo_run, user_spec

    sft_user = markers.get("sft_user")
    user = user_spec(plan, model, Path(sft_user.result["adapter_dir"]) if sft_user else None)
    upstream = [markers["sft_agent"]] + ([sft_user] if plan.needs_sft_user else [])
    settings = {"model": model, "seed": config.seed, "grpo": config.grpo.model_dump(), "plan": plan.model_dump(),
                "user": plan.user}
    adapter = Path(markers["sft_agent"].result["adapter_dir"])
    return stages.run(plan.source, settings, upstream,
                      lambda folder: grpo_run(config, plan, model, adapter, export, folder, user))
