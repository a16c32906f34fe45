"""Embedded-model benchmark: the local engine's prompt layout and decoding optimisations off vs on, in one process.

Modes (`MODES`): a recorded prompt (``messages``, or ``old_messages``: the same call as `CachedJSONAdapter` laid
it out before the stable-first small-model layout) and engine settings: the prefix KV cache, the KV cache
growing in place, the engine's own greedy loop (grammar-forced tokens without logits) and prompt-lookup drafts.
``before`` = old prompts, everything off (``model.generate``); ``after`` = new prompts, the engine's defaults;
``after_off`` = new prompts, everything off (the identity check for the engine optimisations); ``off``,
``prefix``, ``on`` as in earlier runs (``results/local_lm*.json``).

Workload (default ``assistant``): the mock domain's assistant turn as the engine formats it (DSPy's
``JSONAdapter`` over ``AssistantTurn``: the policy, the tool schemas and a dialogue), for ``--calls``
different dialogues that share the instruction/policy/tools prefix, grammar-constrained to the
signature's JSON schema. ``--replay FILE`` replays recorded calls instead (a JSON list of
``{"messages": [...], "kw": {...}}``); ``--record FILE`` first runs ``demo-synth`` in-process and records
its calls with both prompt layouts (``results/demo_synth_calls_stable.json``).

Modes are interleaved call by call (call 1 in each mode, call 2 in each mode in reverse order, ...),
so load drift on a shared machine cancels; each mode keeps its own prefix cache, started empty, so its
first call prefills everything, as a fresh process would. Modes replaying the same prompts must give the
same greedy token ids (``identical_greedy_token_ids``); ``prefix_share`` says how much of each layout's
prompts a cache of earlier calls could serve.

Reported per mode (best repeat): s/call, prompt tokens/call, prefilled tokens/call (prompt minus
reused), model forwards/call, completion tokens/s, and the speedup (first mode's s/call / mode's s/call).

Run: ``python -m benchmarks.bench_local_lm [--record calls.json] [--replay calls.json] [--calls 6]
[--order before,after_off,after] [--max-new-tokens 0] [--threads 1] [--json benchmarks/results/local_lm.json]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
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


def record_demo_synth(path: Path, n: int = 2) -> list[dict[str, Any]]:
    """Run ``demo-synth --n N`` in-process (small-model adapter, every engine optimisation on) and record each LM
    call as ``{"messages": new prompt, "old_messages": the same call formatted by `CachedJSONAdapter` (the
    prompt before the stable-first layout), "kw", "token_ids", "seconds", "cached_tokens"}``, in call order."""
    import tempfile

    import typer

    import eigendspy.lm.small_model_adapter as sma
    from eigendspy.cli.synth import demo_synth
    from eigendspy.lm.cached_adapter import CachedJSONAdapter
    from eigendspy.lm.local.engine import LocalEngine

    old_format, pending, records = CachedJSONAdapter(), {}, []

    class Recording(sma.SmallModelJSONAdapter):
        def format(self, signature: Any, demos: Any, inputs: Any) -> Any:
            messages = super().format(signature, demos, inputs)
            pending[messages[-1]["content"]] = old_format.format(signature, demos, inputs)
            return messages

    original_adapter, original_generate = sma.small_model_adapter, LocalEngine.generate

    def generate(self: Any, messages: list[dict[str, str]], **kw: Any) -> Any:
        g = original_generate(self, messages, **kw)
        records.append({"messages": messages, "old_messages": pending.get(messages[-1]["content"]),
                        "kw": {k: v for k, v in kw.items() if k != "stop"}, "token_ids": list(g.token_ids),
                        "seconds": round(g.seconds, 3), "cached_tokens": g.cached_tokens})
        return g

    sma.small_model_adapter, LocalEngine.generate = Recording, generate
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as out:
            try:
                demo_synth(out=Path(out) / "run", n=n)
            except typer.Exit:
                pass
    finally:
        sma.small_model_adapter, LocalEngine.generate = original_adapter, original_generate
    print(f"recorded {len(records)} calls in {time.perf_counter() - started:.0f} s", flush=True)
    path.write_text(json.dumps(records) + "\n")
    return records


def prefix_share(tokenizer: Any, calls: list[list[dict[str, str]]]) -> dict[str, float]:
    """How much of each call's prompt a cache of the earlier calls could serve: per call, the longest token prefix
    it shares with any earlier call's prompt; reported as the mean fraction and the token totals."""
    from eigendspy.lm.local.prompt import encode_prompt

    seen: list[list[int]] = []
    shared = total = 0
    fractions = []
    for messages in calls:
        ids = encode_prompt(tokenizer, messages)
        best = max((next((i for i, (a, b) in enumerate(zip(ids, p, strict=False)) if a != b), min(len(ids), len(p)))
                    for p in seen), default=0)
        seen.append(ids)
        shared, total = shared + best, total + len(ids)
        fractions.append(best / len(ids))
    return {"mean_fraction": round(sum(fractions) / len(fractions), 3), "shared_tokens": shared,
            "prompt_tokens": total, "token_fraction": round(shared / total, 3)}


#: Replay modes: which recorded prompt, and which engine settings (prefix cache, in-place KV cache, own greedy loop
#: with grammar-forced tokens taken without logits, prompt-lookup drafts). ``old_messages`` is the prompt before the
#: stable-first small-model layout (`--record` keeps both); a call file without it has ``messages`` only.
MODES: dict[str, dict[str, Any]] = {
    "off": {"prompt": "messages", "prefix": False, "grow": False, "loop": False, "draft": 0},
    "prefix": {"prompt": "messages", "prefix": True, "grow": False, "loop": False, "draft": 0},
    "on": {"prompt": "messages", "prefix": True, "grow": False, "loop": True, "draft": 8},
    "before": {"prompt": "old_messages", "prefix": False, "grow": False, "loop": False, "draft": 0},
    "before_cache": {"prompt": "old_messages", "prefix": True, "grow": False, "loop": False, "draft": 0},
    "after": {"prompt": "messages", "prefix": True, "grow": True, "loop": True, "draft": 3},
    "after_nodraft": {"prompt": "messages", "prefix": True, "grow": True, "loop": True, "draft": 0},
    "after_off": {"prompt": "messages", "prefix": False, "grow": False, "loop": False, "draft": 0},
}


def run_modes(engine: Any, calls: list[dict[str, Any]], order: list[str], budget: int) -> dict[str, dict[str, Any]]:
    """Replay ``calls`` once per mode (`MODES`), interleaved call by call (call 1 in every mode, then call 2 ...).

    Interleaving cancels load drift on a shared machine; each mode keeps its own prefix cache, started
    empty, so its first call prefills everything, as a fresh process would.
    """
    from eigendspy.lm.local.prefix_cache import PrefixCache

    caches = {mode: PrefixCache() if MODES[mode]["prefix"] else None for mode in order}
    rows: dict[str, list[Any]] = {mode: [] for mode in order}
    seconds = dict.fromkeys(order, 0.0)
    forwards = dict.fromkeys(order, 0)
    for i, call in enumerate(calls):
        for mode in order if i % 2 == 0 else order[::-1]:  # ABBA within the run
            spec = MODES[mode]
            engine.prefix_cache, engine.draft_tokens = caches[mode], spec["draft"]
            engine.grow_cache, engine.greedy_loop = spec["grow"], spec["loop"]
            started = time.perf_counter()
            g = engine.generate(call[spec["prompt"]], **{**call["kw"], "max_new_tokens": budget or call["kw"].get(
                "max_new_tokens")})
            seconds[mode] += time.perf_counter() - started
            rows[mode].append(g)
            forwards[mode] += engine.last_decode.forwards if spec["loop"] else g.completion_tokens
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
    parser.add_argument("--order", default="off,on", help="modes (MODES), run call by call in this order, then "
                        "reversed; e.g. before,after on a --record file: old prompts, all off vs new prompts, all on")
    parser.add_argument("--record", type=Path, help="run demo-synth in-process first and record its calls (new and "
                        "old prompts) to this file, then replay them")
    parser.add_argument("--n", type=int, default=2, help="demo-synth --n for --record")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/local_lm.json"))
    args = parser.parse_args()

    import torch

    from eigendspy.lm.local.engine import local_lm

    torch.set_num_threads(args.threads)
    if args.record:
        record_demo_synth(args.record, args.n)
        args.replay = args.replay or args.record
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
    by_prompt: dict[str, list[Any]] = {}  # modes replaying the same prompts must give the same token ids
    for mode, rs in runs.items():
        by_prompt.setdefault(MODES[mode]["prompt"], []).extend(r["token_ids"] for r in rs)
    identical = all(all(ids == group[0] for ids in group) for group in by_prompt.values())
    shares = {}
    if args.replay:
        shares = {key: prefix_share(engine.tokenizer, [c[key] for c in calls]) for key in by_prompt}
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
        "identical_means": "modes replaying the same prompts gave the same greedy token ids",
        "prefix_share": shares,
        "load_average": list(os.getloadavg()),
        **summary,
        "speedup_s_per_call": {m: round(summary[order[0]]["s_per_call"] / summary[m]["s_per_call"], 2)
                               for m in summary},
        "note": "best repeat per mode of ABBA-ordered runs in one process; the machine may be shared, "
                "so compare the ratio, not absolute seconds",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
