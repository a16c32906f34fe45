"""``eigendspy train``: post-train the agent or the user model from a config file.

Commands: ``sft`` (LoRA SFT; the side — agent or user — comes from the config) and ``user``
(the same, with ``side = "user"`` forced). Each takes ``--config FILE`` (TOML, YAML or JSON; see
``configs/``) and a few overrides, prints a summary and writes ``OUTPUT_DIR/result.json``.
Multi-GPU: run the same command under ``accelerate launch --config_file configs/accelerate/...
-m eigendspy.cli train ...``; only the main process prints and writes.

Adding a trainer (e.g. ``grpo``): load its config with `_load`, run it, and hand the result
model to `report_result`; errors a user can fix (`USER_ERRORS`) become one red line on stderr (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from eigendspy.cli.errors import print_error
from eigendspy.train.config_io import ConfigError, load_config
from eigendspy.train.grpo.filtering import GroupsLost
from eigendspy.train.grpo.rollout import TooManyInfraErrors

console = Console()
train_app = typer.Typer(help="Post-train the agent or the user model (LoRA SFT, GRPO; configs in configs/).",
                        no_args_is_help=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Run config: .toml, .yaml or .json")]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Override max_steps")]
OutputDirOpt = Annotated[Path | None, typer.Option("--output-dir", help="Override output_dir")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Override model (folder or hub id)")]
DatasetOpt = Annotated[Path | None, typer.Option("--dataset", help="Override dataset (an export folder)")]
ResumeOpt = Annotated[bool | None, typer.Option("--resume/--no-resume", help="Override resume")]
ReportToOpt = Annotated[str | None, typer.Option("--report-to", help="Comma-separated: tensorboard, wandb, none")]

AdapterOpt = Annotated[str | None, typer.Option("--adapter", help="Override adapter (an SFT adapter dir)")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="Override user: oracle | model:DIR | vllm:URL#NAME | lm:ID | dspy:ID")]


#: Exceptions that mean a wrong config, path or dataset, or a rollout server that keeps failing: shown as
#: one red line, not a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, FileNotFoundError, ValueError, TooManyInfraErrors,
                                            GroupsLost)


def _load(config: Path, model_cls: type[BaseModel], overrides: dict[str, Any]) -> BaseModel:
    """The config file validated with ``overrides``; a ``dataset`` override replaces the file's ``run_dir``."""
    overrides = dict(overrides)
    dataset = overrides.pop("dataset", None)
    loaded = load_config(config, model_cls, overrides)
    if dataset is None:
        return loaded
    return model_cls.model_validate({**loaded.model_dump(), "dataset": dataset, "run_dir": None})


def _report_to(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    return [] if names in ([], ["none"]) else names


def _is_main_process() -> bool:
    """True unless this is a non-zero rank of a distributed launch (which must not write or print twice)."""
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate ships with the train extra
        return True
    return PartialState().is_main_process


def report_result(result: BaseModel, output_dir: Path, title: str) -> Path | None:
    """Print a run's result as a table and write it to ``output_dir/result.json`` (main process only).

    Returns:
        The path written, or ``None`` on a non-main rank.
    """
    if not _is_main_process():
        return None
    table = Table(title=title, show_header=False)
    for name, value in result.model_dump(mode="json").items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "result.json"
    path.write_text(result.model_dump_json(indent=2))
    console.print(f"result -> {path}")
    return path


def _run_sft(config: Path, overrides: dict[str, Any]) -> None:
    from eigendspy.train.sft import SFTRunConfig, train_sft

    try:
        run = _load(config, SFTRunConfig, overrides)
        if _is_main_process():
            source = run.run_dir if run.run_dir is not None else run.dataset
            console.print(f"[bold]SFT ({run.side})[/]: {run.model} on {source} -> {run.output_dir}")
        result = train_sft(run)
    except USER_ERRORS as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    report_result(result, run.output_dir, f"SFT ({run.side})")


@train_app.command("sft")
def sft_cmd(config: ConfigOpt, max_steps: MaxStepsOpt = None, output_dir: OutputDirOpt = None,
            model: ModelOpt = None, dataset: DatasetOpt = None, resume: ResumeOpt = None,
            report_to: ReportToOpt = None) -> None:
    """LoRA SFT on the export's sft_agent set (or sft_user when the config says side = "user")."""
    _run_sft(config, {"max_steps": max_steps, "output_dir": output_dir, "model": model, "dataset": dataset,
                      "resume": resume, "report_to": _report_to(report_to)})


@train_app.command("user")
def user_cmd(config: ConfigOpt, max_steps: MaxStepsOpt = None, output_dir: OutputDirOpt = None,
             model: ModelOpt = None, dataset: DatasetOpt = None, resume: ResumeOpt = None,
             report_to: ReportToOpt = None) -> None:
    """LoRA SFT of the user model on the export's sft_user set (side = "user", whatever the config says)."""
    _run_sft(config, {"side": "user", "max_steps": max_steps, "output_dir": output_dir, "model": model,
                      "dataset": dataset, "resume": resume, "report_to": _report_to(report_to)})


@train_app.command("grpo")
def grpo_cmd(config: ConfigOpt, max_steps: MaxStepsOpt = None, output_dir: OutputDirOpt = None,
             model: ModelOpt = None, resume: ResumeOpt = None, report_to: ReportToOpt = None,
             adapter: AdapterOpt = None, user: UserOpt = None) -> None:
    """Multi-turn GRPO on LoRA: G episodes per task, checker reward, dynamic filtering of all-equal groups."""
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import train_grpo

    overrides = {"max_steps": max_steps, "output_dir": str(output_dir) if output_dir else None, "model": model,
                 "resume": resume, "report_to": _report_to(report_to), "adapter": adapter, "user": user}
    try:
        run = _load(config, GRPORunConfig, overrides)
        if _is_main_process():
            console.print(f"[bold]GRPO[/]: {run.adapter or run.model} on {run.domain} "
                          f"(G={run.num_generations}, {run.tasks_per_step} groups/step, user={run.user}) "
                          f"-> {run.output_dir}")
        result = train_grpo(run)
    except USER_ERRORS as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    report_result(result, Path(run.output_dir), "GRPO")


__all__ = ["USER_ERRORS", "report_result", "train_app"]
