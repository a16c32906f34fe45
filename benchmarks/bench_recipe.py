"""The paper's recipe, run: synthesize -> SFT -> GRPO -> pass^k, on the mock domain, with live progress.

Why a benchmark script: the recipe (`eigendspy.recipe`) is an hour of CPU at its ``cpu`` size, so it is run
deliberately, resumably, and its numbers are kept: ``recipe_<preset>.json`` (a `RecipeResult`: pass^k with
bootstrap CIs per column and held-out set, GRPO reward and filtered-fraction curves, tokens/s and wall time per
stage) and ``recipe_<preset>.png`` go to ``benchmarks/results/``; the stage folders go to ``--out`` and a
re-run with the same ``--out`` skips every stage already done (a changed setting reruns its stage and
everything downstream).

Presets (`eigendspy.recipe.PRESETS`):

* ``tiny``: a tiny random model built here (`eigendspy.testing.build_tiny_model`) and scripted synthesis roles
  (`eigendspy.testing.scripted_roles`): the whole pipeline in about a minute; zeros, since the model is random.
* ``cpu``: SmolLM2-135M-Instruct (the embedded model; ``eigendspy model fetch`` first) on 2 CPU cores, sized
  from stage costs measured on this machine to finish within 90 minutes (README, "The recipe").
* ``gpu``: the same recipe at a larger size, for one GPU.

Run: ``python -m benchmarks.bench_recipe --preset cpu [--out runs/recipe-cpu] [--set grpo.steps=4 ...]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eigendspy.recipe import PRESETS, RecipeConfig, run_recipe
from eigendspy.recipe.progress import live_board

RESULTS = Path(__file__).parent / "results"
console = Console()


def parse_sets(pairs: list[str]) -> dict:
    """``["grpo.steps=4", "columns=[\\"base\\"]"]`` -> ``{"grpo": {"steps": 4}, "columns": ["base"]}`` (JSON values)."""
    out: dict = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        section, _, field = key.partition(".")
        if field:
            out.setdefault(section, {})[field] = value
        else:
            out[section] = value
    return out


def build_config(args: argparse.Namespace) -> tuple[RecipeConfig, object | None]:
    """The preset with the command line's overrides, and the synthesis roles it needs (tiny: scripted)."""
    config = PRESETS[args.preset].with_overrides(**parse_sets(args.set))
    roles = None
    if args.model:
        config = config.with_overrides(model=args.model)
    if args.threads is not None:
        config = config.with_overrides(threads=args.threads)
    if config.synthesis_lm == "scripted":
        from eigendspy.testing import scripted_roles

        roles = scripted_roles()
    if args.preset == "tiny" and not config.model:
        from eigendspy.testing import build_tiny_model

        folder = Path(args.out) / "tiny_model"
        if not (folder / "config.json").is_file():
            build_tiny_model(folder)
        config = config.with_overrides(model=str(folder))
    return config, roles


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", default=None, help="Stage folders (default runs/recipe-<preset>); reuse to resume")
    parser.add_argument("--model", default=None, help="Base model folder (default: the preset's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="Override a config field, e.g. grpo.steps=4 (JSON values)")
    parser.add_argument("--results", default=str(RESULTS), help="Where recipe_<preset>.json/.png are copied")
    args = parser.parse_args(argv)
    args.out = args.out or f"runs/recipe-{args.preset}"
    config, roles = build_config(args)
    with live_board(console) as (on_stage, on_record):
        result = run_recipe(config, args.out, roles=roles, progress=on_stage, on_record=on_record)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    result.to_json(results / f"recipe_{args.preset}.json")
    if result.plot:
        shutil.copyfile(result.plot, results / f"recipe_{args.preset}.png")
    rows = result.table(k=1)
    table = Table(*rows[0], title=f"pass^1 [95% bootstrap CI], eval user: {result.eval_user}")
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    console.print("wall time per stage: " + ", ".join(f"{s.stage} {s.seconds:.0f}s" + (" (skipped)" if s.skipped
                                                                                      else "") for s in result.stages))
    console.print(f"tokens/s: {result.tokens_per_s}")
    console.print(f"written: {results / f'recipe_{args.preset}.json'} (+ .png); stage folders in {args.out}")


if __name__ == "__main__":
    main()
