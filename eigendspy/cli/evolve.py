"""``eigendspy evolve``: compile one role with GEPA / MIPROv2 / bootstrap against its checker metric.

The compiled program lands in ``OUT/compiled/<role>.json`` (versioned copies beside it) with a
report (JSON, markdown, score-curve PNG); ``eigendspy synth --compiled OUT/compiled`` starts the
engine from it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
EVOLVABLE = ("assistant", "user")


def _examples(domain, n: int, seed: int):
    import dspy

    from eigendspy.domains.retail.demo import retail_demo_tasks

    tasks = domain.tasks("train") if "train" in domain.splits() else domain.tasks()
    if not tasks and domain.name == "retail":
        tasks = retail_demo_tasks(domain, n=2 * n, seed=seed)
    if len(tasks) < 2:
        raise typer.BadParameter(f"domain {domain.name!r} has too few tasks to evolve on; pass --data")
    rng = random.Random(seed)
    tasks = rng.sample(tasks, min(len(tasks), 2 * n))
    examples = [dspy.Example(task=t).with_inputs("task") for t in tasks]
    half = len(examples) // 2
    return examples[:half], examples[half:]


def evolve_cmd(
    role: Annotated[str, typer.Option(help=f"Role to compile: {', '.join(EVOLVABLE)}")] = "assistant",
    domain: Annotated[str, typer.Option("--domain", "-d")] = "retail",
    data: Annotated[Path | None, typer.Option("--data", help="tau2-bench domain directory")] = None,
    optimizer: Annotated[str, typer.Option(help="gepa, miprov2 or bootstrap")] = "gepa",
    budget: Annotated[str, typer.Option(help="light, medium, heavy, or a number")] = "light",
    config: Annotated[Path | None, typer.Option(help="TOML with \\[lm] default/roles")] = None,
    n: Annotated[int, typer.Option("--n", help="Training tasks (the same number is held out)")] = 8,
    out: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/evolve"),
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Compile one role against its checker-pass metric and save it, with a report and a score plot."""
    from eigendspy.agents import Assistant, UserSimulator
    from eigendspy.domains import get_domain
    from eigendspy.lm.config import RoleLMConfig, build_role_lms
    from eigendspy.lm.preflight import check_role_lms
    from eigendspy.optimizers import AssistantEpisode, UserEpisode, assistant_metric, evolve, user_simulator_metric

    if role not in EVOLVABLE:
        raise typer.BadParameter(f"role must be one of {EVOLVABLE} (other roles: use eigendspy.optimizers.evolve)")
    dom = get_domain(domain, data_dir=data)
    lm_config = RoleLMConfig.from_toml(config) if config else RoleLMConfig()
    # the two roles evolve calls: a missing key fails here, not minutes into the optimizer
    check_role_lms(lm_config, source=str(config) if config else "the LM config", roles=(role, "reflector"))
    lms = build_role_lms(lm_config)
    trainset, valset = _examples(dom, n, seed)
    if role == "assistant":
        program, metric = AssistantEpisode(dom, assistant=Assistant(lm=lms["assistant"])), assistant_metric(dom)
    else:
        program, metric = UserEpisode(dom, user=UserSimulator(lm=lms["user"])), user_simulator_metric(dom)
    budget_value: str | int = int(budget) if budget.isdigit() else budget
    console.print(f"[bold]evolve[/] {role} on {domain} with {optimizer} ({budget}); "
                  f"{len(trainset)} train / {len(valset)} held-out tasks")
    _, report = evolve(program, trainset, valset, metric, optimizer=optimizer, budget=budget_value,
                       reflection_lm=lms["reflector"], task_lm=lms[role], seed=seed, out_dir=out, role=role)
    console.print(report.to_markdown())
    console.print(f"compiled program and report in {out}/")

