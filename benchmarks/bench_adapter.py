"""CPU per DSPy call for the assistant role: DSPy's ChatAdapter vs `CachedChatAdapter`, side by side.

What runs: the assistant's signature (`AssistantTurn`) with the retail policy (tau2's when
``$EIGENDSPY_TAU2_SHARED`` or ``/work/shared/tau2`` has it, else the built-in one), the 16 retail tool
schemas as a ``list[dspy.Tool]`` input and a realistic 8-message transcript. Four rows, each timed for
the stock adapter and the cached one in alternating rounds (so both see the same machine load; the
median round is kept and the ratio is the number to compare):

- ``format``: ``adapter.format(signature, demos, inputs)`` (the prompt DSPy sends);
- ``format_parse``: format plus ``adapter.parse`` of a realistic tool-call answer;
- ``predict``: a whole ``dspy.Predict(AssistantTurn)`` call on a scripted LM (`eigendspy.testing`),
  i.e. what the engine pays per assistant call apart from the episode loop; the scripted LM's own
  work (reading the request, writing the answer) is included in both columns;
- ``predict_native``: the same with native function calling on (tools go as LM tools, not as text);
- ``episodes``: whole retail episodes of `benchmarks.bench_orchestrator`'s workload (assistant and user
  DSPy modules, tool execution, the orchestrator loop) at zero latency, CPU per LM call, i.e. the figure
  the issue's "CPU per DSPy call" target is stated in (``--episodes 0`` skips it).

Every row first checks that both adapters produce identical messages. CPU is ``time.process_time()``.

Run: ``python -m benchmarks.bench_adapter [--calls 200 --rounds 7 --episodes 64]`` (writes
``benchmarks/results/adapter.json``; ``--json PATH`` elsewhere).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy

from eigendspy.agents.assistant import schema_tools
from eigendspy.domains import get_domain
from eigendspy.lm.cached_adapter import CachedChatAdapter
from eigendspy.signatures.assistant import AssistantTurn
from eigendspy.testing import ScriptedLM, ScriptedToolCall, ScriptedToolCalls

TARGET_MS = 1.2
DIALOGUE = "\n".join([
    "agent: Hi! How can I help you today?",
    "user: Hi, I'm Yusuf Rossi, zip 19122. I have a question about my order #W2378156.",
    "agent: [tool call find_user_id_by_name_zip] {\"first_name\": \"Yusuf\", \"last_name\": \"Rossi\", "
    "\"zip\": \"19122\"}",
    "[tool result find_user_id_by_name_zip] yusuf_rossi_9620",
    "agent: [tool call get_order_details] {\"order_id\": \"#W2378156\"}",
    "[tool result get_order_details] " + json.dumps({
        "order_id": "#W2378156", "user_id": "yusuf_rossi_9620", "status": "delivered",
        "items": [{"name": "Headphones", "product_id": "6992792935", "item_id": "4202497723", "price": 342.81,
                   "options": {"type": "over-ear", "connectivity": "wireless", "color": "black"}},
                  {"name": "Vacuum Cleaner", "product_id": "1762337868", "item_id": "4602305039",
                   "price": 561.05, "options": {"type": "robotic", "bagged/bagless": "bagless"}}]}),
    "agent: Thank you, you are verified. That order is delivered and has 2 items.",
    "user: Could you tell me what the first item is and what the items cost in total?",
])
ANSWER = ("[[ ## tool_calls ## ]]\n"
          '{"tool_calls": [{"name": "calculate", "args": {"expression": "342.81 + 561.05"}}]}\n\n'
          "[[ ## response ## ]]\n\n\n[[ ## completed ## ]]")


def tau2_retail() -> str | None:
    data = Path(os.environ.get("EIGENDSPY_TAU2_SHARED", "/work/shared/tau2")) / "retail"
    return str(data) if (data / "db.json").exists() else None


def _answer(req: Any) -> ScriptedToolCalls:
    return ScriptedToolCalls(calls=[ScriptedToolCall(name="calculate", arguments={"expression": "342.81 + 561.05"})],
                             outputs={"response": ""})


def _per_call_ms(fn: Callable[[], Any], calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        fn()
    return 1000 * (time.process_time() - start) / calls


def side_by_side(make: Callable[[dspy.ChatAdapter], Callable[[], Any]], calls: int, rounds: int) -> dict[str, Any]:
    """Median ms per call of the stock and the cached adapter, rounds alternating (one warm-up call each)."""
    fns = {"stock": make(dspy.ChatAdapter()), "cached": make(CachedChatAdapter())}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for r in range(rounds):
        for name in (("stock", "cached") if r % 2 == 0 else ("cached", "stock")):
            samples[name].append(_per_call_ms(fns[name], calls))
    stock, cached = (statistics.median(samples[n]) for n in ("stock", "cached"))
    return {"stock_ms": stock, "cached_ms": cached, "ratio": cached / stock, "speedup": stock / cached,
            "stock_rounds_ms": samples["stock"], "cached_rounds_ms": samples["cached"]}


def episodes_side_by_side(episodes: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """CPU ms per LM call of whole zero-latency episodes, DSPy's default adapter vs the cached one."""
    import asyncio

    from benchmarks.orchestrator_workload import Runner, domain_spec

    runner = Runner(domain_spec(), episodes)
    samples: dict[str, list[float]] = {"stock": [], "cached": []}
    adapters = {"stock": dspy.ChatAdapter(), "cached": CachedChatAdapter()}
    for r in range(rounds):
        for name in (("stock", "cached") if r % 2 == 0 else ("cached", "stock")):
            with dspy.context(adapter=adapters[name], disable_history=True):
                out = asyncio.run(runner.run(range(episodes), latency=0.0, concurrency=concurrency))
            samples[name].append(1000 * out["cpu_s"] / out["calls"])
    stock, cached = (statistics.median(samples[n]) for n in ("stock", "cached"))
    return {"stock_ms": stock, "cached_ms": cached, "ratio": cached / stock, "speedup": stock / cached,
            "episodes": episodes, "concurrency": concurrency, "calls_per_round": out["calls"],
            "stock_rounds_ms": samples["stock"], "cached_rounds_ms": samples["cached"]}


def run(calls: int = 200, rounds: int = 7, episodes: int = 64) -> dict[str, Any]:
    data_dir = tau2_retail()
    domain = get_domain("retail", data_dir=data_dir)
    tools = schema_tools(domain.tool_schemas())
    inputs = {"policy": domain.policy, "dialogue": DIALOGUE, "tools": tools}
    for native in (False, True):  # the benchmark is void unless the prompts are the same bytes
        stock, cached = dspy.ChatAdapter(use_native_function_calling=native), CachedChatAdapter(
            use_native_function_calling=native)
        for _ in range(2):
            if stock.format(AssistantTurn, [], inputs) != cached.format(AssistantTurn, [], inputs):
                raise AssertionError("cached adapter formatted a different prompt")

    def fmt(adapter: dspy.ChatAdapter) -> Callable[[], Any]:
        return lambda: adapter.format(AssistantTurn, [], inputs)

    def fmt_parse(adapter: dspy.ChatAdapter) -> Callable[[], Any]:
        return lambda: (adapter.format(AssistantTurn, [], inputs), adapter.parse(AssistantTurn, ANSWER))

    def predict(native: bool) -> Callable[[dspy.ChatAdapter], Callable[[], Any]]:
        def make(adapter: dspy.ChatAdapter) -> Callable[[], Any]:
            adapter.use_native_function_calling = native
            lm, module = ScriptedLM(_answer, native_tools=native), dspy.Predict(AssistantTurn)

            def call() -> Any:
                with dspy.context(lm=lm, adapter=adapter, trace=None):
                    pred = module(**inputs)
                lm.log.reset()  # the scripted LM keeps every request: keep memory flat
                lm.history.clear()
                return pred
            return call
        return make

    rows = {
        "format": side_by_side(fmt, calls, rounds),
        "format_parse": side_by_side(fmt_parse, calls, rounds),
        "predict": side_by_side(predict(False), calls, rounds),
        "predict_native": side_by_side(predict(True), calls, rounds),
    }
    if episodes:
        rows["episodes"] = episodes_side_by_side(episodes, min(16, episodes), max(3, rounds // 2))
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "dspy": dspy.__version__, "cpus": os.cpu_count(),
                    "load_avg": os.getloadavg()},
        "domain": "retail (tau2 data)" if data_dir else "retail (built-in)",
        "policy_chars": len(domain.policy), "tools": len(tools), "calls_per_round": calls, "rounds": rounds,
        "target_ms_per_call": TARGET_MS,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--episodes", type=int, default=64, help="episodes per round of the episodes row (0: skip)")
    parser.add_argument("--json", default="benchmarks/results/adapter.json")
    args = parser.parse_args()
    result = run(args.calls, args.rounds, args.episodes)
    print(f"{result['domain']}: policy {result['policy_chars']} chars, {result['tools']} tools; "
          f"load avg {result['machine']['load_avg'][0]:.2f}")
    print(f"{'row':<16}{'stock ms':>10}{'cached ms':>11}{'ratio':>8}{'speedup':>9}")
    for name, row in result["rows"].items():
        print(f"{name:<16}{row['stock_ms']:>10.3f}{row['cached_ms']:>11.3f}{row['ratio']:>8.2f}"
              f"{row['speedup']:>8.1f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
