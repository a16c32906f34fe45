"""The ``eigendspy`` command line (typer).

Commands land with the issue that builds them; today: ``demo`` (the built-in default job),
``tasks`` (list and validate a domain's tasks), ``verify`` (checker verification), ``eval``
(run episodes and report pass^k) and ``score`` (re-grade a tau2 results file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from eigendspy.cli.errors import CLIError, run_cli, set_debug  # noqa: E402
from eigendspy.domains import BUILTIN  # noqa: E402

app = typer.Typer(help="eigendspy: tau2-exact environments, synthetic data with executable checkers, RL.",
                  no_args_is_help=True)
console = Console()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error "
                                                        "(also: EIGENDSPY_DEBUG=1)")] = False,
) -> None:
    set_debug(debug)


def main(args: list[str] | None = None) -> None:
    """The ``eigendspy`` entry point: the app behind the one-line error boundary (`run_cli`)."""
    run_cli(app, args)


DomainOpt = Annotated[str, typer.Option("--domain", "-d", help=f"Built-in domain: {', '.join(BUILTIN)}")]
DataOpt = Annotated[Path | None, typer.Option("--data", help="tau2-bench domain directory to overlay")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="Task split, e.g. train or test")]


def _load(domain: str, data: Path | None, split: str | None):
    from eigendspy.domains import get_domain

    dom = get_domain(domain, data_dir=data)
    tasks = dom.tasks(split)
    return dom, tasks


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run directory (rerun with the same one to resume)")] = Path("runs/demo"),
    oracle: Annotated[bool, typer.Option("--oracle", help="The old seconds-long demo instead: built-in retail, "
                                                          "checker-verified tasks, oracle episodes, pass^k")] = False,
    tasks: Annotated[int | None, typer.Option(help="Tasks to synthesize [12] (--oracle: demo tasks to derive [6])")
                     ] = None,
    streams: Annotated[int, typer.Option(help="Plan cells (streams); whole cells are held out")] = 4,
    sft_steps: Annotated[int, typer.Option(help="LoRA SFT optimizer steps")] = 12,
    trials: Annotated[int | None, typer.Option(help="Trials per held-out task, pass^k for k <= trials [4] "
                                                    "(--oracle: [2])")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
) -> None:
    """The built-in default job: the recipe end to end on the embedded model, offline.

    Synthesize verified tasks and dialogues on the mock domain (SmolLM2-135M-Instruct plays the roles, the
    gold-action teacher the assistant) -> inspect -> export Hugging Face datasets -> LoRA SFT of the agent ->
    pass^k of base vs SFT on held-out plan cells -> OUT/report.md, plots, datasets, adapter.
    """
    if oracle:
        _oracle_demo(out, trials=trials or 2, num_tasks=tasks or 6)
        return
    tasks, trials = tasks or 12, trials or 4
    from eigendspy.cli.synth import print_inspect
    from eigendspy.lm.local.fetch import ModelNotFetchedError
    from eigendspy.recipe.demo import demo_config, run_demo
    from eigendspy.recipe.pipeline import resolve_model
    from eigendspy.recipe.progress import live_board

    config = demo_config(tasks=tasks, streams=streams, sft_steps=sft_steps, trials=trials, threads=threads)
    try:
        config = config.with_overrides(model=resolve_model(config))
    except ModelNotFetchedError as exc:
        raise CLIError("the embedded model is not fetched yet: run `eigendspy model fetch` first, then "
                       "`eigendspy demo` again (or `eigendspy demo --oracle`, which needs no model)") from exc
    console.print(f"[bold]demo[/]: mock domain, {tasks} tasks in {streams} plan cells, embedded model "
                  f"{Path(config.model).name}, {sft_steps} SFT steps, {trials} trials per held-out task -> {out}/")
    with live_board(console, "demo") as (on_stage, on_record):
        result, report = run_demo(config, out, progress=on_stage, on_record=on_record)
    print_inspect(Path(result.synthesis["run_dir"]))
    rows = result.table(k=1)
    table = Table(*rows[0], title="pass^1 on held-out tasks [95% bootstrap CI]")
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {report} (+ {out}/recipe.png, {out}/split/export datasets, {out}/sft_agent/adapter)")


def _oracle_demo(out: Path, trials: int, num_tasks: int) -> None:
    """Built-in retail domain, checker-verified tasks, oracle episodes, pass^k: seconds, no model."""
    from eigendspy.core.oracle import OracleAssistant, OracleUser
    from eigendspy.domains import get_domain
    from eigendspy.domains.retail.demo import retail_demo_tasks
    from eigendspy.eval.runner import run_episodes, write_run
    from eigendspy.scoring.verify import verify_tasks

    domain = get_domain("retail")
    tasks = retail_demo_tasks(domain, n=num_tasks)
    console.print(f"[bold]retail (built-in)[/]: {len(domain.toolkit)} tools, seeded DB, {len(tasks)} demo tasks")
    summary = verify_tasks(domain, tasks)
    console.print(summary.to_markdown())
    episodes = run_episodes(domain, tasks, OracleAssistant(), OracleUser(), trials=trials)
    outputs = write_run(out, domain, tasks, episodes)
    (out / "tasks.json").write_text(json.dumps([t.to_tau2() for t in tasks], indent=2))
    (out / "verification.md").write_text(summary.to_markdown())
    _print_report(outputs.report)
    console.print(f"wrote {out}/: results.json (tau2 format), eval.json, eval.md, tasks.json, verification.md")


@app.command()
def tasks(domain: DomainOpt, data: DataOpt = None, split: SplitOpt = None) -> None:
    """List a domain's tasks and validate them: reward bases, and tasks whose gold replay fails."""
    from eigendspy.scoring.checker import Checker

    dom, items = _load(domain, data, split)
    if not items:
        console.print(f"domain {domain!r} has no tasks (built-in domains have none; pass --data)")
        raise typer.Exit(1)
    bases: dict[str, int] = {}
    broken = []
    for task in items:
        key = "+".join(b.value for b in task.reward_basis)
        bases[key] = bases.get(key, 0) + 1
        try:
            checker = Checker.for_reward(dom, task)
            env = checker.gold_env()
            errors = [c.name for c, m in env.log if m.error]
            if errors:
                broken.append((task.id, f"gold actions returned errors: {', '.join(errors)}"))
        except Exception as exc:  # reported per task
            broken.append((task.id, f"{type(exc).__name__}: {exc}"))
    console.print(f"{len(items)} tasks in {domain}" + (f" split {split}" if split else ""))
    for key, count in sorted(bases.items()):
        console.print(f"  reward basis {key}: {count}")
    splits = dom.splits()
    if splits:
        console.print("  splits: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    for task_id, reason in broken:
        console.print(f"  [yellow]task {task_id}[/]: {reason}")
    console.print(f"  gold replay problems: {len(broken)}")


@app.command()
def verify(domain: DomainOpt, data: DataOpt = None, split: SplitOpt = None,
           out: Annotated[Path | None, typer.Option(help="Write the report (markdown)")] = None) -> None:
    """Checker verification: gold passes, mutants fail, and which null policies pass."""
    from eigendspy.scoring.verify import verify_tasks

    dom, items = _load(domain, data, split)
    summary = verify_tasks(dom, items)
    text = summary.to_markdown()
    console.print(text)
    console.print(f"null policy passes: {summary.null_passing_tasks}")
    console.print(f"unverified (gold fails, names an unknown tool, or mutants survive): {summary.unverified_tasks}")
    if out:
        out.write_text(text + "\n")


@app.command(name="eval")
def eval_cmd(
    domain: DomainOpt, data: DataOpt = None, split: SplitOpt = None,
    trials: Annotated[int, typer.Option(help="Trials per task (pass^k for k <= trials)")] = 4,
    agent: Annotated[str, typer.Option(
        help="Assistant: oracle | model:DIR | vllm:URL#NAME | lm:LITELLM_ID | dspy:ROLE_LM_ID")] = "oracle",
    api_base: Annotated[str | None, typer.Option(help="API base of an lm: or dspy: agent's server")] = None,
    model: Annotated[Path | None, typer.Option(help="Shorthand for --agent model:DIR (model or adapter)")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer dir of a vllm: agent's model")] = None,
    user: Annotated[str, typer.Option(
        help="User, same forms as --agent: oracle | model:DIR | vllm:URL#NAME | lm:LITELLM_ID | dspy:ROLE_LM_ID"
    )] = "oracle",
    user_api_base: Annotated[str | None, typer.Option(help="API base of an lm: or dspy: user's server")] = None,
    user_tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer dir of a vllm: user's model")] = None,
    user_device: Annotated[str | None, typer.Option(help="Device of a model: user (default: GPU if any)")] = None,
    instructions: Annotated[Path | None, typer.Option(help="Evolved assistant instruction file (text, stripped)",
                                                      exists=True, dir_okay=False)] = None,
    temperature: Annotated[float, typer.Option(help="Model agent sampling temperature (0: greedy)")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(help="Model agent tokens per turn")] = 512,
    seed: Annotated[int, typer.Option(help="Episode and sampling seed (tau2's default)")] = 300,
    max_steps: Annotated[int, typer.Option(help="Orchestrator steps per episode")] = 200,
    concurrency: Annotated[int, typer.Option(help="Episodes in flight at once")] = 32,
    task_ids: Annotated[str | None, typer.Option(help="Comma-separated task ids (after --split)")] = None,
    out: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/eval"),
    tau2_compat: Annotated[bool, typer.Option(help="Reproduce tau2 exactly")] = True,
) -> None:
    """Run episodes and report pass^k with tau2 semantics (NL assertions excluded) plus a tau2 results file."""
    from eigendspy.core.orchestrator import EpisodeConfig
    from eigendspy.eval.agents import ParticipantSpec, build_assistant, build_user
    from eigendspy.eval.runner import run_episodes, write_run
    from eigendspy.eval.tau2_results import RunInfo

    if model is not None:
        if agent != "oracle":
            raise typer.BadParameter("give --model DIR or --agent, not both", param_hint="--model")
        agent = f"model:{model}"
    text = instructions.read_text().strip() if instructions is not None else None
    try:  # both specs checked before either side loads a model
        agent_spec = ParticipantSpec.parse(agent)
        agent_spec.check_options("assistant", tokenizer=tokenizer, instructions=text, api_base=api_base)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--agent") from exc
    try:
        user_spec = ParticipantSpec.parse(user)
        user_spec.check_options("user", tokenizer=user_tokenizer, api_base=user_api_base)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--user") from exc
    dom, items = _load(domain, data, split)
    if task_ids is not None:
        wanted = [t.strip() for t in task_ids.split(",") if t.strip()]
        known = {t.id: t for t in items}
        if missing := [t for t in wanted if t not in known]:
            raise typer.BadParameter(f"unknown task ids {missing}", param_hint="--task-ids")
        items = [known[t] for t in wanted]
    try:
        assistant = build_assistant(agent_spec, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                                    instructions=text, tokenizer=tokenizer, api_base=api_base)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--agent") from exc
    try:
        user_side = build_user(user_spec, api_base=user_api_base, seed=seed, tokenizer=user_tokenizer,
                               device=user_device)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--user") from exc
    config = EpisodeConfig(max_steps=max_steps, seed=seed)
    episodes = run_episodes(dom, items, assistant, user_side, trials=trials, concurrency=concurrency,
                            tau2_compat=tau2_compat, config=config)
    run = RunInfo(agent_llm=agent, user_llm=user, agent_implementation=f"eigendspy_{agent_spec.kind}",
                  user_implementation=f"eigendspy_{user_spec.kind}_user", temperature=temperature,
                  num_trials=trials, max_steps=max_steps, seed=seed)
    outputs = write_run(out, dom, items, episodes, run)
    settings = {"domain": domain, "data": str(data) if data else None, "split": split, "agent": agent,
                "user": user, "temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed,
                "max_steps": max_steps, "trials": trials, "task_ids": [t.id for t in items], "instructions": text}
    (out / "eval_config.json").write_text(json.dumps(settings, indent=2))
    _print_report(outputs.report)
    console.print(f"wrote {out}/: results.json (tau2 format), eval.json, eval.md, eval_config.json")


@app.command()
def score(results: Annotated[Path, typer.Argument(help="A tau2 results file")], domain: DomainOpt,
          data: DataOpt = None) -> None:
    """Re-grade a tau2 results file with eigendspy's checker and compare with its recorded rewards."""
    from eigendspy.domains import get_domain
    from eigendspy.eval.tau2_results import read_results
    from eigendspy.scoring.checker import Checker

    dom = get_domain(domain, data_dir=data)
    task_list, sims = read_results(results)
    by_id = {t.id: t for t in task_list}
    if unknown := sorted({s.task_id for s in sims} - set(by_id)):
        raise CLIError(f"{results}: simulations name task ids not in its tasks list: {', '.join(unknown[:5])}"
                       f"{' ...' if len(unknown) > 5 else ''}; pass a complete tau2 results file")
    table = Table("simulation", "task", "recorded", "eigendspy", "agree")
    agree = 0
    for sim in sims:
        res = Checker.for_reward(dom, by_id[sim.task_id], tau2_compat=True).score(
            sim.messages, sim.termination_reason)
        same = sim.reward is None or abs(res.reward - sim.reward) < 1e-9
        agree += same
        table.add_row(sim.id, sim.task_id, str(sim.reward), f"{res.reward:.1f}", "yes" if same else "NO")
    console.print(table)
    console.print(f"{agree}/{len(sims)} rewards agree")


def _print_report(report) -> None:
    table = Table("k", "pass^k", "95% CI")
    for k, value in sorted(report.pass_hat_k.items()):
        lo, hi = report.pass_hat_k_ci.get(k, (value, value))
        table.add_row(str(k), f"{value:.3f}", f"[{lo:.3f}, {hi:.3f}]")
    console.print(table)
    console.print(f"average reward {report.avg_reward:.3f} over {report.num_trials} trials of {report.num_tasks} tasks")


def _register_engine_commands() -> None:
    """Every command module registers here, so no command module imports another."""
    from eigendspy.cli import evolve_loop
    from eigendspy.cli.evolve import evolve_cmd
    from eigendspy.cli.synth import register
    from eigendspy.cli.train import train_app

    register(app)
    evolve_loop.register(app)
    app.command(name="evolve")(evolve_cmd)
    app.add_typer(train_app, name="train")


_register_engine_commands()

if __name__ == "__main__":
    main()
