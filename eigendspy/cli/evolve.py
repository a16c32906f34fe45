"""``eigendspy evolve``: compile one role with GEPA / MIPROv2 / bootstrap against its checker metric.

Every role the engine runs can be evolved: ``assistant`` and ``user`` in full episodes against a
real counterpart (the configured user simulator or assistant, an SFT'd model, or the oracle),
``generator``, ``task_validator`` and ``trajectory_validator`` against execution ground truth
(`eigendspy.optimizers.role_programs` builds each role's program, metric and examples). Tasks
come from a domain's task set or, with ``--tasks-from``, from the accepted tasks of a synth run.

The compiled program lands in ``OUT/compiled/<role>.json`` (versioned copies beside it) with a
report (JSON, markdown, score-curve PNG); ``eigendspy synth --compiled OUT/compiled`` starts the
engine from it. This module only turns flags into arguments: every mistake is one `CLIError`
line naming the flag and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from eigendspy.cli.errors import CLIError

console = Console()
EVOLVABLE = ("assistant", "user", "generator", "task_validator", "trajectory_validator")
OPTIMIZERS = ("gepa", "miprov2", "bootstrap")
BUDGETS = ("light", "medium", "heavy")
PARTNER_HELP = "configured (the role LM from --config, default) | oracle | model:DIR | vllm:URL#NAME | lm:ID | dspy:ID"


def _budget(budget: str) -> str | int:
    if budget in BUDGETS:
        return budget
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    raise CLIError(f"--budget {budget!r}: use {', '.join(BUDGETS)} or a positive number (metric calls for gepa, "
                   "trials for miprov2, demos for bootstrap)")


def check_arguments(role: str, optimizer: str, budget: str, n: int, user: str | None,
                    assistant: str | None) -> str | int:
    """Refuse flags that do not fit together, before any domain, task or LM is loaded; the parsed budget."""
    if role not in EVOLVABLE:
        raise CLIError(f"--role {role!r} cannot be evolved: use one of {', '.join(EVOLVABLE)}")
    if optimizer not in OPTIMIZERS:
        raise CLIError(f"--optimizer {optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
    if n < 1:
        raise CLIError(f"--n {n}: give at least 1 training item (as many are held out)")
    if user is not None and role != "assistant":
        fix = "pick its partner with --assistant" if role == "user" else f"--role {role} plays no dialogue: drop --user"
        raise CLIError(f"--user picks the partner of --role assistant; {fix}")
    if assistant is not None and role != "user":
        fix = ("pick its partner with --user" if role == "assistant"
               else f"--role {role} plays no dialogue: drop --assistant")
        raise CLIError(f"--assistant picks the partner of --role user; {fix}")
    return _budget(budget)


def _run_source(tasks_from: Path, domain: str | None, data: Path | None) -> tuple[str, Path | None]:
    """The run's domain (and tau2 data folder) from its manifest; an explicit other --domain is an error."""
    from eigendspy.engine.store.store import read_manifest

    if not (tasks_from / "manifest.json").is_file():
        raise CLIError(f"--tasks-from {tasks_from}: not a run directory (no manifest.json); give a directory that "
                       "`eigendspy synth` wrote, or omit --tasks-from to use the domain's task set")
    manifest = read_manifest(tasks_from)
    if domain is not None and manifest.domain and domain != manifest.domain:
        raise CLIError(f"--domain {domain} but --tasks-from {tasks_from} holds {manifest.domain} tasks; "
                       f"drop --domain or pass --domain {manifest.domain}")
    stored = Path(manifest.data_dir) if manifest.data_dir else None
    return domain or manifest.domain or "retail", data or stored


def load_tasks(dom: Any, tasks_from: Path | None, n: int, seed: int) -> tuple[list, list | None]:
    """(tasks, generator plans or None): a run's accepted tasks and plans, else the domain's task set."""
    from eigendspy.optimizers.role_programs import accepted_tasks, run_plans

    if tasks_from is not None:
        tasks = accepted_tasks(tasks_from)
        if len(tasks) < 2:
            raise CLIError(f"--tasks-from {tasks_from} holds {len(tasks)} accepted task(s); evolve needs at least 2 "
                           "(one to train, one held out): synthesize more or omit --tasks-from")
        return tasks, run_plans(tasks_from)
    tasks = dom.tasks("train") if "train" in dom.splits() else dom.tasks()
    if not tasks and dom.name == "retail":
        from eigendspy.domains.retail.demo import retail_demo_tasks

        tasks = retail_demo_tasks(dom, n=2 * n, seed=seed)
    if len(tasks) < 2:
        raise CLIError(f"--domain {dom.name} has {len(tasks)} task(s) to evolve on; pass --data with a tau2 "
                       "domain folder or --tasks-from with a synth run directory")
    return tasks, None


def partner_spec(role: str, user: str | None, assistant: str | None, api_base: str | None,
                 tokenizer: Path | None) -> Any:
    """The dialogue role's partner: ``"configured"``/``"oracle"``, a checked `ParticipantSpec`, or None.

    Parsed before anything loads, so a typo fails at once with the flag named.
    """
    from eigendspy.eval.agents import ParticipantSpec
    from eigendspy.optimizers.role_programs import CONFIGURED, ORACLE

    if role not in ("assistant", "user"):
        return None
    side = "user" if role == "assistant" else "assistant"
    spec = (user if role == "assistant" else assistant) or CONFIGURED
    if spec in (CONFIGURED, ORACLE):
        return spec
    try:
        parsed = ParticipantSpec.parse(spec)
        parsed.check_options(side, tokenizer=tokenizer, api_base=api_base)
    except ValueError as exc:
        raise _partner_error(side, spec, exc) from exc
    return parsed


def _partner_error(side: str, spec: str, exc: Exception) -> CLIError:
    text = str(exc).replace("`--tokenizer ", "`--partner-tokenizer ").replace("api_base", "--partner-api-base")
    return CLIError(f"--{side} {spec!r}: {text} (forms: {PARTNER_HELP})")


def build_partner(role: str, spec: Any, lms: dict, *, seed: int, api_base: str | None,
                  tokenizer: Path | None) -> Any:
    """The frozen partner: `counterpart` for configured/oracle, else the participant factory of ``eval``."""
    from eigendspy.optimizers.role_programs import counterpart
    from eigendspy.train.participants import build_participant

    if isinstance(spec, str):
        return counterpart(role, spec, lms)
    side = "user" if role == "assistant" else "assistant"
    try:
        return build_participant(spec, side, temperature=0.0 if side == "assistant" else 0.7,
                                 max_new_tokens=512 if side == "assistant" else 256, seed=seed,
                                 tokenizer=tokenizer, api_base=api_base)
    except (ValueError, FileNotFoundError) as exc:
        raise _partner_error(side, str(spec), exc) from exc


def needed_lms(role: str, optimizer: str, partner: Any) -> tuple[str, ...]:
    """The role LMs this run calls: the role, the reflector (gepa, miprov2) and a configured partner."""
    roles = [role]
    if optimizer != "bootstrap":
        roles.append("reflector")
    if partner == "configured":  # other partners bring their own model
        roles.append("user" if role == "assistant" else "assistant")
    return tuple(roles)


def evolve_cmd(
    role: Annotated[str, typer.Option(help=f"Role to compile: {', '.join(EVOLVABLE)}")] = "assistant",
    domain: Annotated[str | None, typer.Option("--domain", "-d", help="Domain (default: retail; with "
                                                                       "--tasks-from, the run's)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="tau2-bench domain directory")] = None,
    tasks_from: Annotated[Path | None, typer.Option("--tasks-from", help="A synth run directory: evolve on its "
                                                                         "accepted tasks (and plans)")] = None,
    user: Annotated[str | None, typer.Option(help=f"--role assistant's partner: {PARTNER_HELP}")] = None,
    assistant: Annotated[str | None, typer.Option(help=f"--role user's partner: {PARTNER_HELP}")] = None,
    partner_api_base: Annotated[str | None, typer.Option(help="API base of an lm: or dspy: partner")] = None,
    partner_tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer dir of a vllm: partner")] = None,
    optimizer: Annotated[str, typer.Option(help="gepa, miprov2 or bootstrap")] = "gepa",
    budget: Annotated[str, typer.Option(help="light, medium, heavy, or a number")] = "light",
    config: Annotated[Path | None, typer.Option(help="TOML with \\[lm] default/roles")] = None,
    n: Annotated[int, typer.Option("--n", help="Training items (the same number is held out)")] = 8,
    out: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/evolve"),
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Compile one role against its checker-pass metric and save it, with a report and a score plot."""
    from eigendspy.domains import get_domain
    from eigendspy.lm.config import RoleLMConfig, build_role_lms
    from eigendspy.lm.preflight import check_role_lms
    from eigendspy.optimizers.role_programs import evolve_role

    budget_value = check_arguments(role, optimizer, budget, n, user, assistant)
    spec = partner_spec(role, user, assistant, partner_api_base, partner_tokenizer)
    if tasks_from is not None:
        domain, data = _run_source(tasks_from, domain, data)
    dom = get_domain(domain or "retail", data_dir=data)
    tasks, plans = load_tasks(dom, tasks_from, n, seed)
    lm_config = RoleLMConfig.from_toml(config) if config else RoleLMConfig()
    # the roles evolve calls: a missing key fails here, not minutes into the optimizer
    check_role_lms(lm_config, source=str(config) if config else "the LM config",
                   roles=needed_lms(role, optimizer, spec))
    lms = build_role_lms(lm_config)
    partner = None if spec is None else build_partner(role, spec, lms, seed=seed, api_base=partner_api_base,
                                                      tokenizer=partner_tokenizer)
    source = f"{len(tasks)} tasks from {tasks_from}" if tasks_from else f"{len(tasks)} {dom.name} tasks"
    console.print(f"[bold]evolve[/] {role} on {dom.name} with {optimizer} ({budget}); {source}"
                  + (f"; partner: {spec}" if spec else ""))
    _, report, setup = evolve_role(role, dom, lms, tasks, partner=partner, plans=plans, optimizer=optimizer,
                                   budget=budget_value, n=n, seed=seed, out_dir=out)
    for note in setup.notes:
        console.print(f"  {note}")
    console.print(f"{len(setup.trainset)} train / {len(setup.valset)} held-out items"
                  + (f"; partner {setup.partner}" if setup.partner else ""))
    console.print(report.to_markdown())
    console.print(f"compiled program and report in {out}/")
