"""Embedded-model benchmark: the local engine's prefix KV cache and prompt-lookup drafts off vs on, in one process.

Modes: ``off`` (``model.generate``, as before either existed), ``prefix`` (prefix KV cache only,
``model.generate``; the engine's default) and ``on`` (prefix KV cache + prompt-lookup drafts, ``draft_tokens=8``).

Workload (default ``assistant``): the mock domain's assistant turn as the engine formats it (DSPy's
``JSONAdapter`` over ``AssistantTurn``: the policy, the tool schemas and a dialogue), for ``--calls``
different dialogues that share the instruction/policy/tools prefix, grammar-constrained to the
signature's JSON schema. The prompts are captured once through DSPy, then replayed straight into
``LocalEngine.generate`` in each mode. ``--replay FILE`` replays recorded calls instead (a JSON list
of ``{"messages": [...], "kw": {...}}``, e.g. the calls of one ``demo-synth`` run in their order,
stored in ``benchmarks/results/demo_synth_calls.json``).

Modes are interleaved call by call (call 1 in each mode, call 2 in each mode in reverse order, ...),
so load drift on a shared machine cancels; each mode keeps its own prefix cache, started empty, so its
first call prefills everything, as a fresh process would. Greedy outputs must be the same token ids in
every mode (``identical``).

Reported per mode (best repeat): s/call, prompt tokens/call, prefilled tokens/call (prompt minus
reused), model forwards/call, completion tokens/s, and the speedup (off s/call / mode s/call).

Run: ``python -m benchmarks.bench_local_lm [--calls 6] [--rounds 1] [--max-new-tokens 64]
[--threads 1] [--replay calls.json] [--json benchmarks/results/local_lm.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path
from typing import Any

DIALOGUES = [
    "user: Hi, please create a task for user_{i} titled 'Quarterly report {i}'.",
    "user: I need the status of task_{i} changed to completed. My user id is user_{i}.",
    "user: Can you list the users? I am looking for user_{i}.",
    "user: Please mark task_{i} as in_progress.\nassistant: Sure, could you confirm your user id?\n"
    "user: It's user_{i}.",
]


def assistant_calls(lm: Any, n: int) -> list[dict[str, Any]]:
    """``n`` assistant-turn requests as DSPy formats them (captured from the engine, answers discarded)."""
    import dspy

    from eigendspy.agents.assistant import schema_tools
    from eigendspy.domains import get_domain
    from eigendspy.signatures.assistant import AssistantTurn

    domain = get_domain("mock", num_users=4, tasks_per_user=3)
    tools = schema_tools(domain.tool_schemas())
    engine, captured = lm.engine, []
    original = engine.generate

    def capture(messages: list[dict[str, str]], **kw: Any) -> Any:
        captured.append({"messages": messages, "kw": {k: v for k, v in kw.items() if k != "stop"}})
        return original(messages, **{**kw, "max_new_tokens": 1})

    engine.generate = capture
    try:
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            for i in range(n):
                dialogue = DIALOGUES[i % len(DIALOGUES)].format(i=i + 1)
                start = len(captured)
                try:
                    dspy.Predict(AssistantTurn)(policy=domain.policy, dialogue=dialogue, tools=tools)
                except Exception:  # a 1-token answer does not parse; the prompt is captured
                    pass
                del captured[start + 1 :]  # only the first request (a retry or fallback would differ)
    finally:
        del engine.generate
    return captured


def run_modes(engine: Any, calls: list[dict[str, Any]], order: list[str], budget: int) -> dict[str, dict[str, Any]]:
    """Replay ``calls`` once per mode, interleaved call by call (call 1 in every mode, then call 2 ...).

    Interleaving cancels load drift on a shared machine; each mode keeps its own prefix cache, started
    empty, so its first call prefills everything, as a fresh process would. Modes: ``off``
    (``model.generate``), ``prefix`` (prefix cache + ``model.generate``), ``on`` (prefix cache + drafts).
    """
    from eigendspy.lm.local.prefix_cache import PrefixCache

    caches = {mode: PrefixCache() if mode in ("prefix", "on") else None for mode in order}
    rows: dict[str, list[Any]] = {mode: [] for mode in order}
    seconds = dict.fromkeys(order, 0.0)
    forwards = dict.fromkeys(order, 0)
    for i, call in enumerate(calls):
        for mode in order if i % 2 == 0 else order[::-1]:  # ABBA within the run
            engine.prefix_cache, engine.draft_tokens = caches[mode], 8 if mode == "on" else 0
            started = time.perf_counter()
            g = engine.generate(call["messages"], **{**call["kw"], "max_new_tokens": budget or call["kw"].get(
                "max_new_tokens")})
            seconds[mode] += time.perf_counter() - started
            rows[mode].append(g)
            forwards[mode] += engine.last_decode.forwards if mode == "on" else g.completion_tokens
    result = {}
    for mode in order:
        gs, wall, n = rows[mode], seconds[mode], len(calls)
        completion = sum(g.completion_tokens for g in gs)
        result[mode] = {
            "seconds": wall,
            "s_per_call": wall / n,
            "prompt_tokens_per_call": sum(g.prompt_tokens for g in gs) / n,
            "prefill_tokens_per_call": sum(g.prompt_tokens - g.cached_tokens for g in gs) / n,
            "completion_tokens_per_call": completion / n,
            "forwards_per_call": forwards[mode] / n,
            "completion_tokens_per_s": completion / wall,
            "prompt_and_completion_tokens_per_s": (sum(g.prompt_tokens for g in gs) + completion) / wall,
            "token_ids": [list(g.token_ids) for g in gs],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="replays of the whole call list")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="budget per call (0: the replayed one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (demo-synth's default is 1)")
    parser.add_argument("--replay", type=Path, help="recorded calls to replay instead of the assistant workload "
                        "(benchmarks/results/demo_synth_calls.json: the 17 calls of one `demo-synth --n 2` run)")
    parser.add_argument("--skip", type=int, default=0, help="replayed calls to skip first")
    parser.add_argument("--order", default="off,on", help="modes, run call by call in this order, then reversed "
                        "(off: model.generate; prefix: prefix cache only; on: prefix cache + prompt-lookup drafts)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/local_lm.json"))
    args = parser.parse_args()

    import torch

    from eigendspy.lm.local.engine import local_lm

    torch.set_num_threads(args.threads)
    lm = local_lm(max_new_tokens=256, max_string_chars=160, max_array_items=3, prefix_cache=0)
    engine = lm.engine
    if args.replay:
        calls = json.loads(args.replay.read_text())[args.skip : args.skip + args.calls]
        workload = f"replay of {args.replay.name}"
    else:
        calls = assistant_calls(lm, args.calls)
        workload = "mock assistant turn (JSONAdapter, AssistantTurn), dialogues sharing the policy/tools prefix"
    order = args.order.split(",")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in order}
    for _ in range(args.rounds):
        for mode, last in run_modes(engine, calls, order, args.max_new_tokens).items():
            runs[mode].append(last)
            print(f"{mode:>6}: {last['s_per_call']:.2f} s/call, prefill {last['prefill_tokens_per_call']:.0f} "
                  f"tok/call, {last['forwards_per_call']:.0f} forwards/call, "
                  f"{last['completion_tokens_per_s']:.1f} completion tok/s", flush=True)
    reference = runs[order[0]][0]["token_ids"]
    identical = all(r["token_ids"] == reference for rs in runs.values() for r in rs)
    summary = {}
    for mode, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        summary[mode] = {k: round(v, 3) for k, v in best.items() if k != "token_ids"}
        summary[mode]["s_per_call_all_repeats"] = [round(r["s_per_call"], 3) for r in rs]
    result = {
        "benchmark": "bench_local_lm",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": args.threads,
        "model": engine.model_dir.name,
        "workload": workload,
        "calls_per_mode": len(calls),
        "max_new_tokens": args.max_new_tokens,
        "identical_greedy_token_ids": identical,
        **summary,
        "speedup_s_per_call": {m: round(summary["off"]["s_per_call"] / summary[m]["s_per_call"], 2)
                               for m in summary if "off" in summary},
        "note": "best repeat per mode of ABBA-ordered runs in one process; the machine may be shared, "
                "so compare the ratio, not absolute seconds",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
