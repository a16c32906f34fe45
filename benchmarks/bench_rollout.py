"""Rollout throughput of the in-process HF backend on CPU (1 vs 8 episodes in flight, with and without prefix reuse).

Why: GRPO's wall time is rollouts plus the update. The HF backend (`eigendspy.train.backends.hf.HFBackend`) fuses
the turns of concurrent episodes into one ``generate`` and, with prefix reuse, keeps each dialogue's keys/values
so a turn prefills only its new tokens. This measures what each buys on CPU (target: concurrency 8 gives >= 2x
the tokens/s of concurrency 1 with reuse), whether reuse changes the sampled ids, and checks that everything
*around* generation (user simulator, environment, checker) stays under 1 % of a training step.

What runs (one process, measured side by side with the same model, tasks, episode count, seeds and
``max_new_tokens``):

* the model: a random-init Qwen2 (hidden 256, 4 layers, 4.4M parameters: generation, not Python, dominates)
  over a BPE tokenizer trained on the domain's own policy and tool schemas
  (`eigendspy.testing.tiny_model.build_tokenizer`,
  TRL's ``qwen2_5.jinja``), so prompts have realistic lengths (~4.6k tokens: retail's policy + 16 tools);
* ``runs[mode][c1|c8]``: `EpisodeRunner` over the built-in retail domain's demo tasks
  (`eigendspy.domains.retail.demo.retail_demo_tasks`) with `OracleUser` and the production checker, concurrency 1
  and 8, each with prefix reuse off (``no_reuse``: every turn re-prefills the dialogue) and on (``reuse``).
  A random policy almost never stops on its own, so assistant turns sample ``max_new_tokens`` and episodes
  end at ``max_steps``: all runs do (nearly) the same amount of generation. Sampling is seeded, so runs of
  one concurrency sample the same ids in both modes unless reuse changed a logit (``same_ids``);
* ``grpo``: a few real GRPO steps (`eigendspy.train.grpo.run.build_trainer`, LoRA, TRL's trainer, the in-process
  backend over the live model, prefix reuse on as by default) to get the step time the 1 % target is stated
  against;
* ``oracle``: `OracleAssistant` episodes of the same tasks, whose gold tool calls make the environment and
  the checker do real work (the random policy rarely calls a tool): their per-episode cost is projected onto
  the GRPO step as a worst case.

The user, environment and checker are timed by `benchmarks.rollout_instrument` (library code untouched). With 8
episodes in flight these overlap generation (a worker thread), so their share of wall time is an upper bound.

Measured numbers and what they mean: README.md, "Benchmarks" (raw: ``results/rollout_cpu.json``, torch's default
threads; ``results/rollout_cpu_1thread.json``, one thread, steadier on a shared machine).

Run: ``python -m benchmarks.bench_rollout [--quick] [--modes no_reuse reuse] [--threads N] [--json PATH]``; results
go to ``benchmarks/results/rollout_cpu.json`` (``--quick``, used by CI, writes only where ``--json`` says).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import torch  # noqa: E402

from benchmarks.rollout_instrument import CountingBackend, TimedUser, Timers, instrumented  # noqa: E402
from eigendspy.scoring.checker import Checker  # noqa: E402

__all__ = ["DEFAULTS", "MODES", "QUICK", "TARGET_FRACTION", "TARGET_RATIO", "CountingBackend", "Timers", "instrumented",
           "main", "run_benchmark"]

TARGET_FRACTION = 0.01  # the target: environment + checker time < 1 % of step time
TARGET_RATIO = 2.0  # issue 12: tokens/s at concurrency 8 >= 2x concurrency 1, with prefix reuse
MODES = ("no_reuse", "reuse")
RESULTS = Path(__file__).resolve().parent / "results" / "rollout_cpu.json"
DEFAULTS: dict[str, Any] = {"episodes": 8, "tasks": 8, "max_new_tokens": 48, "max_steps": 6, "hidden": 256,
                            "layers": 4, "intermediate": 1024, "concurrency": (1, 8), "grpo_steps": 1,
                            "num_generations": 4, "tasks_per_step": 2, "modes": MODES}
QUICK: dict[str, Any] = {**DEFAULTS, "episodes": 4, "tasks": 2, "max_new_tokens": 6, "max_steps": 4, "hidden": 32,
                         "layers": 1, "intermediate": 64, "concurrency": (1, 4), "grpo_steps": 1,
                         "num_generations": 2, "tasks_per_step": 1}


# --- setup ----------------------------------------------------------------------------------------------


def build_model(out: Path, corpus: list[str], hidden: int, layers: int, intermediate: int) -> tuple[Any, Any]:
    """A random Qwen2 over a tokenizer trained on ``corpus`` (the domain's text), saved to ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eigendspy.testing.tiny_model import build_tiny_model

    build_tiny_model(out, vocab_size=8192, extra_corpus=corpus, hidden_size=hidden, num_layers=layers,
                     intermediate_size=intermediate)
    return AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)


def _fractions(parts: dict[str, float], total: float) -> dict[str, float]:
    return {k: (v / total if total > 0 else 0.0) for k, v in parts.items()}


# --- runs -----------------------------------------------------------------------------------------------


def rollout_run(domain: Any, tasks: list[Any], model: Any, tok: Any, user: Any, timers: Timers, *, episodes: int,
                concurrency: int, max_new_tokens: int, max_steps: int, reuse: bool) -> dict[str, Any]:
    """``episodes`` episodes (tasks cycled) with ``concurrency`` in flight; throughput and time split."""
    from eigendspy.core.orchestrator import EpisodeConfig
    from eigendspy.train.backends.base import SamplingParams
    from eigendspy.train.grpo.rollout import EmptyEpisode, EpisodeRunner, episode_to_sample
    from eigendspy.train.policy import ChatModelParticipant

    backend = CountingBackend(model, tok, max_batch=max(16, concurrency), prefix_cache_tokens=131_072 if reuse else 0)
    assert backend.reuses_prefixes == reuse
    policy = ChatModelParticipant(backend, tok, sampling=SamplingParams(temperature=1.0, seed=0,
                                                                         max_new_tokens=max_new_tokens))
    runner = EpisodeRunner(domain, policy, TimedUser(user, timers), config=EpisodeConfig(max_steps=max_steps),
                           concurrency=concurrency)
    jobs = [(tasks[i % len(tasks)], i // len(tasks)) for i in range(episodes)]
    timers.reset()
    with instrumented(timers):
        started = time.perf_counter()
        done = runner.run(jobs)
        wall = time.perf_counter() - started
    samples, skipped = [], 0
    for episode in done:
        try:
            samples.append(episode_to_sample(episode))
        except EmptyEpisode:
            skipped += 1
    tokens = sum(s.policy_tokens for s in samples)
    stats = dict(backend.stats)
    parts = {**timers.wall, "generate": stats["generate_s"]}
    ids = hashlib.sha256(json.dumps([s.completion_ids for s in samples]).encode()).hexdigest()
    return {
        "concurrency": concurrency, "prefix_reuse": reuse, "completion_ids_sha256": ids,
        "episodes": len(done), "skipped": skipped, "wall_s": wall,
        "policy_tokens": tokens, "policy_tokens_per_s": tokens / wall, "episodes_per_s": len(done) / wall,
        "policy_turns": sum(s.policy_turns for s in samples),
        "terminations": sorted({e.termination_reason.value for e in done}),
        "prompt_tokens_first_turn": min(len(s.prompt_ids) for s in samples),
        "batches": stats["batches"], "mean_batch": stats["requests"] / max(1, stats["batches"]),
        "generate_s": stats["generate_s"], "prompt_tokens": stats["prompt_tokens"],
        "prefill_tokens": stats["prefill_tokens"], "reused_tokens": stats["reused_tokens"],
        "prefill_s": stats["prefill_s"],
        "padding_tokens": stats["padding_tokens"], "prompt_tokens_per_s": stats["prompt_tokens"] / stats["generate_s"],
        "timers": timers.snapshot(),
        "fraction_of_wall": _fractions(parts, wall),
        "user_env_checker_fraction": sum(timers.wall.values()) / wall,
        "env_checker_fraction": (timers.wall["environment"] + timers.wall["checker"]) / wall,
    }


def oracle_run(domain: Any, tasks: list[Any], user: Any, timers: Timers, episodes: int) -> dict[str, Any]:
    """Gold-acting assistant episodes: the environment and checker doing real work, per episode."""
    from eigendspy.core.oracle import OracleAssistant
    from eigendspy.core.orchestrator import Orchestrator, run_sync

    orch = Orchestrator(domain, OracleAssistant(), TimedUser(user, timers),
                        checker_factory=Checker.reward_factory(domain))
    jobs = [tasks[i % len(tasks)] for i in range(episodes)]
    timers.reset()
    with instrumented(timers):
        started = time.perf_counter()
        done = run_sync(orch.run_many(jobs, concurrency=1))
        wall = time.perf_counter() - started
    calls = sum(len(m.tool_calls or []) for e in done for m in e.messages)
    return {"episodes": len(done), "wall_s": wall, "tool_calls_per_episode": calls / len(done),
            "mean_reward": sum(e.reward or 0.0 for e in done) / len(done), "timers": timers.snapshot(),
            "user_env_checker_ms_per_episode": 1000 * sum(timers.wall.values()) / len(done),
            "env_checker_ms_per_episode": 1000 * (timers.wall["environment"] + timers.wall["checker"]) / len(done)}


def grpo_run(model_dir: Path, tasks: list[Any], user: Any, timers: Timers, s: dict[str, Any],
             work: Path) -> dict[str, Any]:
    """Real GRPO steps on the same model; the step time that the 1 % target is stated against."""
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import build_trainer

    config = GRPORunConfig(model=str(model_dir), output_dir=str(work / "grpo"), domain="retail",
                           num_generations=s["num_generations"], tasks_per_step=s["tasks_per_step"],
                           max_steps=s["grpo_steps"], learning_rate=1e-5, max_new_tokens=s["max_new_tokens"],
                           max_episode_steps=s["max_steps"], max_refill_rounds=0, report_to=[], save_steps=10_000,
                           concurrency=max(s["concurrency"]), max_context_tokens=None, use_cpu=True, seed=0)
    trainer, rollout = build_trainer(config, user=TimedUser(user, timers), tasks=tasks, disable_tqdm=True)
    timers.reset()
    with instrumented(timers):
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    steps = trainer.state.global_step
    rollout_s = sum(h["rollout_s"] for h in rollout.history)
    generate_s = rollout.backend.stats["generate_s"]
    env_checker = timers.wall["environment"] + timers.wall["checker"]
    return {"steps": steps, "episodes_per_step": s["num_generations"] * s["tasks_per_step"], "wall_s": wall,
            "step_s": wall / max(1, steps), "rollout_s": rollout_s, "generate_s": generate_s,
            "rollout_fraction_of_step": rollout_s / wall, "generate_fraction_of_rollout": generate_s / rollout_s,
            "timers": timers.snapshot(), "fraction_of_step": _fractions(dict(timers.wall), wall),
            "env_checker_fraction_of_step": env_checker / wall,
            "user_env_checker_fraction_of_step": sum(timers.wall.values()) / wall,
            "policy_tokens_per_s": [h["policy_tokens_per_s"] for h in rollout.history]}


def comparisons(runs: dict[str, dict[str, Any]], concurrency: tuple[int, int]) -> tuple[dict[str, Any], Any]:
    """High/low concurrency ratios per mode and reuse/no-reuse ratios per concurrency; whether ids matched."""
    low, high = (f"c{c}" for c in concurrency)
    keys = ("policy_tokens_per_s", "episodes_per_s")
    ratios: dict[str, Any] = {mode: {k: r[high][k] / r[low][k] for k in keys} for mode, r in runs.items()}
    if set(MODES) <= set(runs):
        base, reuse = runs["no_reuse"], runs["reuse"]
        ratios["reuse_vs_no_reuse"] = {c: reuse[c]["policy_tokens_per_s"] / base[c]["policy_tokens_per_s"]
                                       for c in (low, high)}
        return ratios, {c: reuse[c]["completion_ids_sha256"] == base[c]["completion_ids_sha256"] for c in (low, high)}
    return ratios, None


def run_benchmark(settings: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    """Build the model, run both concurrencies, the GRPO steps and the oracle reference; return the record."""
    from eigendspy.core.oracle import OracleUser
    from eigendspy.domains import get_domain
    from eigendspy.domains.retail.demo import retail_demo_tasks

    s = dict(settings)
    started, load_before = time.monotonic(), os.getloadavg()
    domain = get_domain("retail")
    tasks = retail_demo_tasks(domain, n=s["tasks"])
    user, timers = OracleUser(), Timers()
    corpus = [domain.policy, json.dumps(domain.tool_schemas("assistant"), indent=2)]
    phases: dict[str, float] = {}

    def lap(name: str) -> None:
        phases[name] = time.monotonic() - started - sum(phases.values())

    with tempfile.TemporaryDirectory(prefix="bench_rollout_") as tmp:
        work = Path(tmp)
        model, tok = build_model(work / "model", corpus, s["hidden"], s["layers"], s["intermediate"])
        lap("setup")
        log(f"model: {model.num_parameters() / 1e6:.2f}M params, vocab {len(tok)}; "
            f"{len(tasks)} retail demo tasks; torch threads {torch.get_num_threads()}")
        # warm-up (thread pools, allocator, lazy imports) outside every timed run
        for mode in s["modes"]:
            rollout_run(domain, tasks[:1], model, tok, user, timers, episodes=1, concurrency=1,
                        max_new_tokens=2, max_steps=4, reuse=mode == "reuse")
        lap("warmup")
        runs: dict[str, dict[str, Any]] = {}
        for mode in s["modes"]:
            for c in s["concurrency"]:
                runs.setdefault(mode, {})[f"c{c}"] = r = rollout_run(
                    domain, tasks, model, tok, user, timers, episodes=s["episodes"], concurrency=c,
                    max_new_tokens=s["max_new_tokens"], max_steps=s["max_steps"], reuse=mode == "reuse")
                log(f"  rollout {mode:<8} c={c:<3} wall {r['wall_s']:6.2f} s  {r['policy_tokens_per_s']:7.1f} tok/s  "
                    f"{r['episodes_per_s']:.3f} ep/s  prefilled {r['prefill_tokens']} of {r['prompt_tokens']} "
                    f"prompt tokens ({r['prefill_s']:.2f} s apart from decoding)"
                    f" user+env+checker {100 * r['user_env_checker_fraction']:.3f} %")
        lap("rollouts")
        grpo = grpo_run(work / "model", tasks, user, timers, s, work) if s["grpo_steps"] > 0 else None
        lap("grpo (with trainer setup)")
        if grpo:
            log(f"  grpo {grpo['steps']} steps: {grpo['step_s']:.2f} s/step, env+checker "
                f"{100 * grpo['env_checker_fraction_of_step']:.3f} % of step")
    oracle = oracle_run(domain, tasks, user, timers, s["episodes"])
    lap("oracle")
    ratios, same_ids = comparisons(runs, s["concurrency"])
    low, high = (runs[s["modes"][-1]][f"c{c}"] for c in s["concurrency"])
    ratio = ratios["reuse"]["policy_tokens_per_s"] if "reuse" in ratios else None
    if grpo:
        basis, measured = "grpo step", grpo["env_checker_fraction_of_step"]
        per_step = oracle["env_checker_ms_per_episode"] / 1000 * grpo["episodes_per_step"]
        projected = per_step / grpo["step_s"]
    else:
        basis, measured, projected = f"rollout c{s['concurrency'][1]} wall", high["env_checker_fraction"], None
    return {
        "benchmark": "rollout", "date": datetime.date.today().isoformat(),
        "machine": {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "settings": {**s, "concurrency": list(s["concurrency"]), "modes": list(s["modes"]),
                     "domain": "retail (built-in)", "user": "oracle", "temperature": 1.0},
        "model": {"params": model.num_parameters(), "vocab": len(tok), "hidden": s["hidden"], "layers": s["layers"],
                  "prompt_tokens_first_turn": low["prompt_tokens_first_turn"]},
        "runs": runs, "ratios": ratios, "same_ids": same_ids, "grpo": grpo, "oracle": oracle,
        "prefix_target": {"min_ratio": TARGET_RATIO, "basis": "policy tokens/s with reuse, c{1} / c{0}".format(
            *s["concurrency"]), "measured": ratio, "met": ratio is not None and ratio >= TARGET_RATIO},
        "target": {"env_checker_fraction_max": TARGET_FRACTION, "basis": basis, "measured": measured,
                   "projected_with_oracle_tool_calls": projected,
                   "met": measured < TARGET_FRACTION and (projected is None or projected < TARGET_FRACTION)},
        "phases_s": phases, "total_s": time.monotonic() - started,
    }


# --- report ---------------------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"HF backend rollouts on CPU ({result['model']['params'] / 1e6:.1f}M random Qwen2, "
                        f"{result['model']['prompt_tokens_first_turn']}-token prompts)")
    for col in ("run", "episodes", "wall s", "policy tok/s", "episodes/s", "mean batch", "prefilled %", "padding %",
                "generate %", "user %", "env %", "checker %"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for mode, by_c in result["runs"].items():
        for name, r in by_c.items():
            f = r["fraction_of_wall"]
            table.add_row(f"{mode} {name}", str(r["episodes"]), f"{r['wall_s']:.2f}", f"{r['policy_tokens_per_s']:.1f}",
                          f"{r['episodes_per_s']:.3f}", f"{r['mean_batch']:.2f}",
                          f"{100 * r['prefill_tokens'] / r['prompt_tokens']:.1f}",
                          f"{100 * r['padding_tokens'] / (r['prompt_tokens'] + r['padding_tokens']):.1f}",
                          f"{100 * f['generate']:.1f}", f"{100 * f['user']:.3f}", f"{100 * f['environment']:.3f}",
                          f"{100 * f['checker']:.3f}")
    g = result["grpo"]
    if g:
        f = g["fraction_of_step"]
        table.add_row(f"grpo ({g['steps']} steps)", str(g["steps"] * g["episodes_per_step"]), f"{g['wall_s']:.2f}",
                      "-", "-", "-", "-", "-", f"{100 * g['generate_s'] / g['wall_s']:.1f}", f"{100 * f['user']:.3f}",
                      f"{100 * f['environment']:.3f}", f"{100 * f['checker']:.3f}")
    console = Console(width=132)
    console.print(table)
    ratios, t, o, p = result["ratios"], result["target"], result["oracle"], result["prefix_target"]
    low, high = result["settings"]["concurrency"]
    for mode in result["runs"]:
        r = ratios[mode]
        console.print(f"{mode}: c{high} vs c{low} policy tokens/s x{r['policy_tokens_per_s']:.2f}, "
                      f"episodes/s x{r['episodes_per_s']:.2f}")
    if "reuse_vs_no_reuse" in ratios:
        console.print("reuse vs no reuse, policy tokens/s: " + ", ".join(
            f"{c} x{x:.2f}" for c, x in ratios["reuse_vs_no_reuse"].items()) + "; same sampled ids: " + ", ".join(
            f"{c} {'yes' if same else 'no'}" for c, same in result["same_ids"].items()))
    if p["measured"] is not None:
        console.print(f"target c{high} >= {p['min_ratio']:.0f}x c{low} with reuse: "
                      f"{'met' if p['met'] else 'NOT met'} (x{p['measured']:.2f})")
    if g:
        console.print(f"grpo: {g['step_s']:.2f} s/step, rollout {100 * g['rollout_fraction_of_step']:.1f} % of step, "
                      f"generation {100 * g['generate_fraction_of_rollout']:.1f} % of rollout")
    console.print(f"oracle episodes ({o['tool_calls_per_episode']:.1f} tool calls each): env+checker "
                  f"{o['env_checker_ms_per_episode']:.2f} ms/episode, user+env+checker "
                  f"{o['user_env_checker_ms_per_episode']:.2f} ms/episode")
    projected = t["projected_with_oracle_tool_calls"]
    shown = "" if projected is None else f"; with oracle tool calls {100 * projected:.3f} %"
    console.print(f"target env+checker < {100 * t['env_checker_fraction_max']:.0f} % of {t['basis']}: "
                  f"{'met' if t['met'] else 'NOT met'} ({100 * t['measured']:.3f} %{shown})")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_rollout", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and run (CI smoke test)")
    parser.add_argument("--episodes", type=int, help="episodes per concurrency run")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per assistant turn")
    parser.add_argument("--concurrency", type=int, nargs=2, metavar=("LOW", "HIGH"), help="the two concurrencies")
    parser.add_argument("--grpo-steps", type=int, help="GRPO steps (0 skips them)")
    parser.add_argument("--modes", nargs="+", choices=MODES, help="prefix reuse off, on, or both (default)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads for the run (default: torch's)")
    parser.add_argument("--json", type=Path, default=None,
                        help="result file (default benchmarks/results/rollout_cpu.json; none with --quick)")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else DEFAULTS)
    for key in ("episodes", "max_new_tokens", "concurrency", "grpo_steps", "modes"):
        if getattr(args, key) is not None:
            value = getattr(args, key)
            settings[key] = tuple(value) if key in ("concurrency", "modes") else value
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        result = run_benchmark(settings)
    finally:
        torch.set_num_threads(threads)
    print_table(result)
    out = args.json if args.json is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
