"""``eigendspy evolve-loop``: synthesize -> learn from the round's failures -> recompile -> synthesize again.

The command turns flags into an `EvolveLoopConfig` and runs `eigendspy.optimizers.loop.evolve_loop`
with the roles of ``--config`` (the ``reflector`` LM rewrites instructions, and proposes workflow
knobs with ``--workflow``). Progress is live (rich); the machine-readable report is
``OUT/evolve_loop.json`` (``--json`` also prints it), next to ``evolve_loop.md`` and the per-round
yield plot. Rerun with ``--resume`` to continue an interrupted loop: finished rounds are read back.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from eigendspy.cli.errors import CLIError

OPTIMIZERS = ("gepa", "miprov2", "bootstrap")
BUDGETS = ("light", "medium", "heavy")


def parse_budget(budget: str) -> str | int:
    """``light|medium|heavy`` or a positive number (GEPA metric calls, MIPROv2 trials, bootstrap demos)."""
    if budget in BUDGETS:
        return budget
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    raise CLIError(f"--budget {budget!r}: use {', '.join(BUDGETS)} or a positive number")


def parse_roles(roles: str) -> list[str]:
    """A comma-separated list of evolvable roles."""
    from eigendspy.optimizers.loop.config import PIPELINE_ORDER

    names = [r.strip() for r in roles.split(",") if r.strip()]
    unknown = [r for r in names if r not in PIPELINE_ORDER]
    if unknown or not names:
        raise CLIError(f"--roles {roles!r}: use a comma-separated subset of {', '.join(PIPELINE_ORDER)}")
    return names


def evolve_loop_cmd(
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain to synthesize for")] = "mock",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds (synthesize, then recompile, per round)")] = 3,
    config: Annotated[Path | None, typer.Option(help="TOML with \\[lm] default/roles (default: embedded model)")
                      ] = None,
    out: Annotated[Path, typer.Option(help="Loop directory (round_<i>/ run directories inside)")] = Path(
        "runs/evolve-loop"),
    optimizer: Annotated[str, typer.Option(help="gepa, miprov2 or bootstrap")] = "gepa",
    budget: Annotated[str, typer.Option(help="light, medium, heavy, or a number per role and round")] = "light",
    tasks_per_round: Annotated[int, typer.Option(min=1, help="Tasks attempted per round")] = 8,
    streams: Annotated[int, typer.Option(min=1, help="Plan streams per round")] = 4,
    episodes: Annotated[int, typer.Option(min=1, help="Dialogues per accepted task")] = 1,
    roles: Annotated[str, typer.Option(help="Roles the loop may recompile (comma-separated)")] = (
        "generator,task_validator,user,assistant,trajectory_validator"),
    top_k: Annotated[int, typer.Option(min=1, help="Roles recompiled per round (largest rejection shares)")] = 2,
    workflow: Annotated[bool, typer.Option(help="Propose engine knob changes between rounds (kept only if the "
                                                "next round's yield improves)")] = False,
    blank_feedback: Annotated[bool, typer.Option(help="Ablation: blank every failure reason the optimizer sees")
                              ] = False,
    data: Annotated[Path | None, typer.Option("--data", help="tau2-bench domain directory to overlay")] = None,
    seed: Annotated[int, typer.Option(help="Loop seed (round i synthesizes with seed + i)")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the loop stored in --out")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final report as JSON")] = False,
) -> None:
    """Closed-loop self-evolution: each round's rejections recompile the roles that caused them."""
    from eigendspy.domains import get_domain
    from eigendspy.engine.config import Roles
    from eigendspy.lm.config import RoleLMConfig, build_role_lms
    from eigendspy.lm.preflight import check_role_lms
    from eigendspy.optimizers.loop import EvolveLoopConfig, evolve_loop
    from eigendspy.optimizers.loop.loop import LoopConfigMismatchError

    console = Console(stderr=as_json)  # with --json, stdout carries the report only
    if optimizer not in OPTIMIZERS:
        raise CLIError(f"--optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    loop_config = EvolveLoopConfig(domain=domain, data_dir=str(data) if data else None, rounds=rounds,
                                   tasks_per_round=tasks_per_round, streams=streams, episodes_per_task=episodes,
                                   optimizer=optimizer, budget=parse_budget(budget), roles=parse_roles(roles),
                                   top_k=top_k, workflow=workflow, blank_feedback=blank_feedback, seed=seed)
    if (out / "loop.json").exists() and not resume:
        raise CLIError(f"{out} holds an evolve-loop run: rerun with --resume to continue it, or pick another --out")
    lm_config = RoleLMConfig.from_toml(config) if config else RoleLMConfig()
    check_role_lms(lm_config, source=str(config) if config else "the LM config")
    dom = get_domain(domain, data_dir=data)
    lms = build_role_lms(lm_config)
    base = Roles.from_lms(lms)
    console.print(f"[bold]evolve-loop[/] {domain}: {rounds} rounds x {tasks_per_round} tasks, {optimizer} "
                  f"({budget}), top {top_k} of {', '.join(loop_config.roles)}" + (" [blank feedback]"
                                                                                   if blank_feedback else ""))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as bar:
        job = bar.add_task("round 1", total=rounds)

        def progress(event: str, ok: bool) -> None:
            if event.startswith("loop:"):
                bar.update(job, description=event[5:])
                if " yield " in event or event.endswith("already complete"):
                    bar.advance(job)
                    console.print(f"  {event[5:]}")

        try:  # with --json, anything the optimizers print (DSPy's progress bars) goes to stderr
            with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
                report = evolve_loop(dom, base, loop_config, out, reflection_lm=lms.get("reflector"),
                                     workflow_lm=lms.get("reflector") if workflow else None, resume=resume,
                                     progress=progress)
        except (FileExistsError, LoopConfigMismatchError) as exc:
            raise CLIError(str(exc)) from exc
    if not as_json:
        console.print(report.to_markdown())
    console.print(f"report: {out / 'evolve_loop.json'}; compiled programs of the last round: "
                  f"{out / f'round_{rounds - 1}' / 'compiled'}")
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json")))


def register(app: typer.Typer) -> None:
    """Add ``evolve-loop`` to ``app`` (`eigendspy.cli.app` registers every command module)."""
    app.command(name="evolve-loop")(evolve_loop_cmd)
