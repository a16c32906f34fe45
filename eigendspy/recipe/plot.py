"""The recipe's figure: pass^1 bars per column with bootstrap CIs, one group per held-out set, and the GRPO
curves (mean reward and filtered fraction per step) beside them.

matplotlib's Agg canvas is used directly (no pyplot), as in `eigendspy.eval.pass_k.plot_pass_hat_k`, so it
works headless and leaves global state alone.
"""

from __future__ import annotations

from pathlib import Path

from eigendspy.recipe.results import RecipeResult


def plot_recipe(result: RecipeResult, path: str | Path, k: int = 1) -> Path:
    """Write the PNG and return its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=120)
    FigureCanvasAgg(fig)
    bars, curves = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    sets = sorted({e.held_out for e in result.evals})
    columns = list(dict.fromkeys(e.column for e in result.evals))
    width = 0.8 / max(1, len(columns))
    for i, column in enumerate(columns):
        xs, ys, lows, highs = [], [], [], []
        for j, name in enumerate(sets):
            cell = result.cell(column, name)
            if cell is None or k not in cell.pass_k:
                continue
            y = cell.pass_k[k]
            lo, hi = cell.pass_k_ci.get(k, (y, y))
            xs.append(j + (i - (len(columns) - 1) / 2) * width)
            ys.append(y)
            lows.append(max(0.0, y - lo))
            highs.append(max(0.0, hi - y))
        style = dict(color="0.8", hatch="//", edgecolor="0.5") if column == "teacher" else {}
        bars.bar(xs, ys, width=width, yerr=[lows, highs], capsize=3,
                 label="teacher (ceiling)" if column == "teacher" else column, **style)
    bars.set_xticks(range(len(sets)), [f"held-out: {s}" for s in sets])
    bars.set_ylim(0.0, 1.05)
    bars.set_ylabel(f"pass^{k} (95% bootstrap CI)")
    bars.set_title(f"recipe{f' ({result.preset})' if result.preset else ''}: {result.model.split('/')[-1]}")
    bars.legend(fontsize=7)
    bars.grid(axis="y", alpha=0.3)
    for curve in result.curves:
        steps = range(1, len(curve.reward) + 1)
        line = curves.plot(steps, curve.reward, marker="o", label=f"{curve.column}: reward")[0]
        curves.plot(steps, curve.filtered_fraction, linestyle="--", color=line.get_color(),
                    label=f"{curve.column}: filtered")
    curves.set_xlabel("GRPO step")
    curves.xaxis.get_major_locator().set_params(integer=True)
    curves.set_ylim(-0.05, 1.05)
    curves.set_title("GRPO: mean reward (solid), filtered fraction (dashed)")
    if result.curves:
        curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
