"""``eigendspy demo``: the recipe end to end at demo size, and the ``report.md`` a new user reads afterwards.

Why the demo is the recipe and not a separate script: a user's first run should be the real pipeline —
synthesize verified tasks and dialogues on the embedded model, inspect what was accepted and why the rest
was not, export the Hugging Face datasets, LoRA-SFT the agent, and compare base vs SFT on held-out plan
cells — so it runs `run_recipe` with `PRESETS["demo"]` and only adds the report. Everything stays in
``out``: the engine's run, the datasets, the adapter, the evaluation results (tau2 format), the plots and
``report.md``; a second ``eigendspy demo`` with the same ``out`` skips the stages already done.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eigendspy.recipe.config import PRESETS, RecipeConfig
from eigendspy.recipe.results import RecipeResult
from eigendspy.recipe.stages import StageStore

REPORT, LOSS_PLOT = "report.md", "sft_loss.png"


def demo_config(tasks: int = 12, streams: int = 4, sft_steps: int = 12, trials: int = 4, threads: int = 0,
                model: str | None = None) -> RecipeConfig:
    """`PRESETS["demo"]` with the command line's sizes."""
    base = PRESETS["demo"]
    return base.with_overrides(
        synthesis={"tasks": tasks, "streams": streams}, sft={"steps": sft_steps}, eval={"trials": trials},
        threads=threads, model=model)


def run_demo(config: RecipeConfig, out: str | Path, *, roles: Any = None,
             progress: Callable[[str, str], None] | None = None,
             on_record: Callable[[str, bool], None] | None = None) -> tuple[RecipeResult, Path]:
    """Run (or resume) the demo into ``out``; return the recipe's result and the report's path."""
    from eigendspy.recipe.pipeline import run_recipe

    out = Path(out)
    result = run_recipe(config, out, roles=roles, progress=progress, on_record=on_record)
    return result, write_report(result, out)


def plot_sft_loss(sft_dir: Path, path: Path) -> Path | None:
    """The agent SFT's training loss per step (from the trainer's saved state), or None without one."""
    states = sorted(sft_dir.glob("checkpoint-*/trainer_state.json"))
    if not states:
        return None
    history = [h for h in json.loads(states[-1].read_text()).get("log_history", []) if "loss" in h]
    if not history:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title("LoRA SFT of the agent")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _rows(export_dir: Path, n: int = 2) -> list[dict[str, Any]]:
    """Up to ``n`` exported ``sft_agent`` rows, each calling a different set of tools where the data allows."""
    from datasets import load_from_disk

    folder = export_dir / "sft_agent"
    if not folder.is_dir():
        return []
    rows = list(load_from_disk(str(folder)))
    picked: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    for row in rows:
        tools = frozenset(c["function"]["name"] for m in row["messages"] for c in m.get("tool_calls") or [])
        if tools not in seen:
            seen.add(tools)
            picked.append(row)
    picked += [r for r in rows if all(r is not p for p in picked)]
    return picked[:n]


def render_row(row: dict[str, Any], system_chars: int = 160) -> str:
    """One exported ``sft_agent`` row as the transcript a reader checks (the system prompt shortened)."""
    lines = [f"task `{row['task_id']}` (reward {row['reward']}):", ""]
    for m in row["messages"]:
        text = m.get("content") or ""
        if m["role"] == "system":
            text = text[:system_chars].replace("\n", " ") + f" ... ({len(m['content'])} characters)"
        calls = [f"{c['function']['name']}({json.dumps(c['function']['arguments'])})"
                 for c in m.get("tool_calls") or []]
        lines.append(f"- **{m['role']}**: {text}" + (f" `{'; '.join(calls)}`" if calls else ""))
    return "\n".join(lines)


def write_report(result: RecipeResult, out: Path) -> Path:
    """``out/report.md``: what ran, what the engine accepted and rejected, the export, SFT, base vs SFT."""
    from eigendspy.engine.store.store import RunStore

    marker = StageStore(out).marker("sft_agent")
    synth, split, sft = result.synthesis, result.split, (marker.result if marker else {})
    export_dir = out / "split" / "export"
    lines = [f"# eigendspy demo: {Path(result.model).name}", "",
             f"The recipe at demo size: synthesize -> inspect -> export -> LoRA SFT -> evaluate base vs SFT on "
             f"held-out plan cells. Teacher: `{result.teacher}`; evaluation user: `{result.eval_user}`; "
             f"this run's wall time {result.wall_s:.0f} s.", "", "## Synthesis (the data engine)", "",
             f"- tasks accepted {synth.get('accepted_tasks')}, rejected {synth.get('rejected_tasks')}; dialogues "
             f"accepted {synth.get('accepted_dialogues')}, rejected {synth.get('rejected_dialogues')}; plan cells "
             f"{synth.get('plan_cells')}",
             f"- LM calls per role: {synth.get('lm_calls')}"]
    run_dir = synth.get("run_dir")
    if run_dir and Path(run_dir).is_dir():
        summary = RunStore.open(run_dir, read_only=True).summary()
        for kind, ks in sorted(summary.kinds.items()):
            lines.append(f"- {kind}s: {ks.accepted} accepted of {ks.total}; by stage {dict(ks.stages)}")
            lines += [f"  - {r.count}x {r.reason[:200]}" for r in ks.top_reasons[:5]]
    card_path = export_dir / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    lines += ["", "## Export (Hugging Face datasets, train cells only)", "",
              f"- `{export_dir}`: {split.get('counts')}",
              f"- held-out cells: {split.get('held_out_cells')}; held-out tasks "
              f"{len(split.get('held_out_task_ids', []))}"]
    if card.get("rejected_at_export"):
        lines.append(f"- left out at export by the pre-checks: {card['rejected_at_export']}")
    lines += ["", "## LoRA SFT of the agent", "",
              f"- {sft.get('global_step')} steps on {sft.get('num_examples')} dialogues, final loss "
              f"{_fmt(sft.get('final_loss'))}, {_fmt(sft.get('tokens_per_second'))} tokens/s; adapter "
              f"`{sft.get('adapter_dir')}`"]
    loss_plot = plot_sft_loss(out / "sft_agent", out / LOSS_PLOT)
    lines += ["", "## Held-out evaluation: base vs SFT", "",
              "pass^k with 95% bootstrap CIs (the teacher's row is the ceiling this user allows).", ""]
    ks = sorted({k for e in result.evals for k in e.pass_k})
    lines += ["| column | held-out | tasks x trials | " + " | ".join(f"pass^{k}" for k in ks) + " |",
              "|---" * (3 + len(ks)) + "|"]
    for e in result.evals:
        cells = [f"{e.pass_k[k]:.2f} [{e.pass_k_ci.get(k, (e.pass_k[k],) * 2)[0]:.2f}, "
                 f"{e.pass_k_ci.get(k, (e.pass_k[k],) * 2)[1]:.2f}]" if k in e.pass_k else "-" for k in ks]
        lines.append(f"| {e.column} | {e.held_out} | {e.num_tasks} x {e.num_trials // max(1, e.num_tasks)} | "
                     + " | ".join(cells) + " |")
    lines += ["", "## Files", "", f"- plots: `{result.plot}`" + (f", `{loss_plot}`" if loss_plot else ""),
              f"- datasets: `{export_dir}` (`sft_agent`, `sft_user`, `rl_tasks`; `datasets.load_from_disk`)",
              f"- adapter: `{sft.get('adapter_dir')}` (PEFT; `eigendspy eval --domain mock --model ADAPTER`)",
              f"- engine run: `{run_dir}` (`eigendspy inspect`); evaluation episodes: `{out}/eval_*/` (tau2 format)",
              f"- results: `{out / 'recipe.json'}`", "", "## Two exported rows", ""]
    for row in _rows(export_dir):
        lines += [render_row(row), ""]
    path = out / REPORT
    path.write_text("\n".join(lines) + "\n")
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else str(value)
