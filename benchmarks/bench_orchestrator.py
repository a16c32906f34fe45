"""Orchestrator throughput: DSPy role modules on a scripted engine with simulated LM latency.

What runs: ``Orchestrator.run_many`` over retail episodes whose assistant and user are the real
DSPy role modules (`eigendspy.agents.Assistant` / `UserSimulator`: ``dspy.Predict`` over
signatures carrying the retail policy, the 16 tool schemas as a ``list[dspy.Tool]`` input and
the dialogue transcript) on `eigendspy.lm.scripted_lm` engines that ``asyncio.sleep`` the
simulated latency. Only the answers are scripted: prompt formatting, adapter parsing, tool
execution against the copy-on-write DB and the episode loop are the production code paths.
The domain is retail over tau2's data (``$EIGENDSPY_TAU2_SHARED`` or ``/work/shared/tau2``:
tau2's policy, DB and task ids, cycled to fill the episode count), else the built-in retail
domain (our policy, seeded DB, simple tasks made from its users' orders).

Every episode is the same deterministic 10-call dialogue (``TURNS``):

    user: identifies (name + zip, or email) and names an order
    assistant: find_user_id_by_name_zip / _by_email -> get_user_details -> get_order_details
    assistant: "you are verified, order ... is <status> with <n> items"
    user: asks about the first item and the total
    assistant: get_product_details -> calculate(sum of item prices)
    assistant: "the first item is a ..., the items total ..."
    user: "... ###STOP###"

Arguments come from the transcript (ids parsed out of earlier tool results); a failing lookup
becomes an error tool message and the dialogue goes on.

Measured side by side in one run, all with E episodes and total concurrency C:
  * ``single``: one process, ``run_many(concurrency=C)``;
  * ``workers``: N spawned processes, each with its own event loop, E/N episodes and C/N slots;
  * ``*_overhead``: the same two with latency 0, giving CPU ms per LM call and the CPU-bound
    ceiling of calls per second.
Each process loads the domain, warms up (2 zero-latency episodes) and then ``gc.freeze()``s its
long-lived objects (imports, parsed DB, tasks; ``--no-gc-freeze`` to skip) before a barrier, so the
timed phase is the episode phase; spawn/import/setup time is reported apart (``setup_s``). CPU is
``time.process_time()`` of each process over its timed phase, summed; ``children_cpu_s_total``
(``getrusage``) adds the workers' setup.

Ideal (latency-bound) wall time. An episode is T sequential LM calls, so a slot finishes at best
one episode per ``T x latency``; E equal episodes in C slots need
``ideal = ceil(E / C) x T x latency`` (the wave formula, used for the ratio; with workers it is
taken per process, with its own E_w and C_w, and the slowest process counts). The flow formula
``calls x latency / C`` equals it whenever C divides E and is reported too (``ideal_flow_s``).
``ratio = ideal / measured wall``; T is measured (calls / episodes), and a JSONAdapter retry
would show up as ``calls_per_episode > 10``.

Arithmetic for the defaults (E=256, latency 0.2 s, C=64, N=2; this machine has 2 cores):
  * calls = 256 x 10 = 2,560; ideal = ceil(256/64) x 10 x 0.2 s = 8.0 s, i.e. 320 calls/s.
  * One call costs c ~= 2.2-2.9 ms of CPU (7 assistant calls with the 6.7 kB policy and 16
    tools, 3 cheaper user calls), so one process tops out at ~1/c ~= 350-370 calls/s: at 320
    calls/s it is ~90 % busy and ``single`` queues (ratio ~0.8).
  * With N=2 each process needs 160 calls/s, i.e. 32 slots x c ~= 80 ms of CPU per 200 ms
    round: ~40 % busy, and 2 processes fit on 2 cores. What remains is queueing inside each
    event loop: a call coming back from its sleep waits for the CPU work of the others that
    came back with it (episodes stay loosely in step), plus GC pauses that stop every in-flight
    episode at once (a full collection of an unfrozen process took 100-200 ms here). Rule of
    thumb: keep C/N x c well below the latency; to go further add processes (cores), not slots.
    The tau2-scale goal (all 256 in flight, 1,280 calls/s) needs 1,280 x c ~= 3-4 busy cores.

Measured on 2026-11-26 (2 cores, Python 3.11.7, dspy 3.4.1, tau2 retail data, defaults; the
machine was shared, load average ~0.6-1.1 during the runs):

    run                procs   C  calls  wall s  ideal s  ratio  calls/s  cpu ms/call
    single                 1  64   2560    9.83     8.00  0.814      261         2.51
    workers                2  64   2560    8.82     8.00  0.907      290         2.67
    single_overhead        1  64   2560    6.86        -      -      373         2.69
    workers_overhead       2  64   2560    2.91        -      -      879         2.18

  Target (workers ratio >= 0.9) met, with a thin margin: six default runs gave workers
  0.907-0.935 and single 0.80-0.86. Without ``gc.freeze()`` the workers reach only ~0.85
  (single ~0.73-0.75). About 15 % of c (~4 ms per episode, paid in one burst at its start) is
  the 16 tool JSON schemas being regenerated for every episode (``Orchestrator._loop`` ->
  ``Domain.tool_schemas`` -> ``ToolSpec.parameters_schema`` -> pydantic ``model_json_schema()``,
  uncached); with them cached (patched outside this file) c fell to ~1.95 ms and ``single``
  alone reached ~0.92.

Run: ``python -m benchmarks.bench_orchestrator [--episodes 256 --latency 0.2 --workers 2
--concurrency 64 --json out.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import re
import resource
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from eigendspy.agents import Assistant, UserSimulator  # noqa: E402
from eigendspy.domain import Domain  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.lm import ScriptedRequest, ScriptedToolCall, ScriptedToolCalls, scripted_lm  # noqa: E402
from eigendspy.orchestrator import Orchestrator  # noqa: E402
from eigendspy.task import EvaluationCriteria, StructuredUserInstructions, Task, UserScenario  # noqa: E402

TURNS = 10  # LM calls per episode: 3 user turns, 5 assistant tool-call turns, 2 assistant replies
TARGET_RATIO = 0.9
DEFAULTS = {"episodes": 256, "latency": 0.2, "workers": 2, "concurrency": 64}
WORKER_TIMEOUT_S = 600.0


# --- domain and tasks -------------------------------------------------------------------------------------


def tau2_root() -> Path:
    return Path(os.environ.get("EIGENDSPY_TAU2_SHARED", "/work/shared/tau2"))


def domain_spec(builtin: bool = False) -> dict[str, Any]:
    """Which retail domain to load (a plain dict, so spawned workers can rebuild it)."""
    data = tau2_root() / "retail"
    if not builtin and (data / "tasks.json").exists() and (data / "db.json").exists():
        return {"name": "retail", "data_dir": str(data)}
    return {"name": "retail", "data_dir": None}


def load_domain(spec: dict[str, Any]) -> Domain:
    return get_domain(spec["name"], data_dir=spec["data_dir"])


def simple_tasks(domain: Domain, n: int = 64) -> list[Task]:
    """Tasks for the built-in domain: a customer asks about one of their orders (no criteria)."""
    db = domain.base_db().model
    tasks = []
    for user in sorted(db.users.values(), key=lambda u: u.user_id):
        if not user.orders:
            continue
        order_id = user.orders[0]
        instructions = StructuredUserInstructions(
            domain="retail",
            reason_for_call=f"You want to know what is in your order {order_id} and what it cost.",
            known_info=f"You are {user.name.first_name} {user.name.last_name} in zip code "
            f"{user.address.zip}.",
            task_instructions="Be brief. End the conversation once you have the answer.",
        )
        tasks.append(Task(id=f"bench_{len(tasks)}", user_scenario=UserScenario(instructions=instructions),
                          evaluation_criteria=EvaluationCriteria()))
        if len(tasks) == n:
            break
    if not tasks:
        raise RuntimeError("the built-in retail DB has no users with orders")
    return tasks


def benchmark_tasks(domain: Domain, episodes: int) -> tuple[list[Task], str]:
    """``episodes`` tasks (the domain's own, cycled; else simple ones) and a description."""
    base = domain.tasks()
    source = f"{len(base)} tau2 retail tasks" if base else ""
    if not base:
        base = simple_tasks(domain)
        source = f"{len(base)} simple tasks over the built-in retail DB"
    return [base[i % len(base)] for i in range(episodes)], source + " (cycled)"


# --- scripted policies ------------------------------------------------------------------------------------

_ORDER = re.compile(r"#W\d+")
_NAME_ZIP = re.compile(r"I'm (\S+) (\S+), zip code (\d{5})")
_SCENARIO_NAME_ZIP = re.compile(
    r"(?:You are|Your name is) ([A-Z]\w+) ([A-Z]\w+).*?zip code (?:is )?(\d{5})", re.S
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CALL = re.compile(r"^you \[tool call\] (\w+)\(", re.M)
_RESULT = re.compile(r"^\[tool result(?: ERROR)?\] (.*)$", re.M)
_YOU = re.compile(r"^you: ", re.M)
_USER_LINE = re.compile(r"^user: (.*)$", re.M)
_PRODUCT = re.compile(r'"product_id": "(\d+)"')
_PRICE = re.compile(r'"price": "?([\d.]+)')
_STATUS = re.compile(r'"status": "([\w ]+)"')
_NAME = re.compile(r'"name": "([^"]+)"')


@dataclass(frozen=True)
class Plan:
    """What the scripted user says about themselves: identity and the order they ask about."""

    first: str | None = None
    last: str | None = None
    zip: str | None = None
    email: str | None = None
    order_id: str | None = None

    def opening(self) -> str:
        who = (f"I'm {self.first} {self.last}, zip code {self.zip}." if self.first and self.zip
               else f"my email is {self.email}." if self.email else "I forgot my details.")
        about = f"my order {self.order_id}" if self.order_id else "my latest order"
        return f"Hi, {who} I have a question about {about}."


def make_plan(task: Task, domain: Domain) -> Plan:
    """Identity and order from the task's gold actions, else from its scenario text and the DB."""
    ident: dict[str, Any] = {}
    email = order_id = None
    for action in task.gold_actions:
        if action.name == "find_user_id_by_name_zip" and not ident:
            ident = action.arguments
        elif action.name == "find_user_id_by_email" and email is None:
            email = action.arguments.get("email")
        if order_id is None and isinstance(action.arguments.get("order_id"), str):
            order_id = action.arguments["order_id"]
    text = task.user_scenario.render()
    if order_id is None and (m := _ORDER.search(text)):
        order_id = m.group(0)
    if not ident and (m := _SCENARIO_NAME_ZIP.search(text)):
        ident = {"first_name": m.group(1), "last_name": m.group(2), "zip": m.group(3)}
    if not ident and email is None and order_id is not None:
        db = domain.base_db().model
        order = getattr(db, "orders", {}).get(order_id)
        user = getattr(db, "users", {}).get(order.user_id) if order is not None else None
        if user is not None:
            name = user.name
            ident = {"first_name": name.first_name, "last_name": name.last_name, "zip": user.address.zip}
    return Plan(ident.get("first_name"), ident.get("last_name"), ident.get("zip"), email, order_id)


def user_policy(plans: dict[str, Plan]) -> Callable[[ScriptedRequest], dict[str, Any]]:
    """The customer: opening (identity + order), one question, then ``###STOP###``."""

    def policy(req: ScriptedRequest) -> dict[str, Any]:
        said = len(_YOU.findall(req.inputs.get("dialogue", "")))
        if said == 0:
            plan = plans.get(req.inputs.get("scenario", "").strip(), Plan())
            return {"message": plan.opening()}
        if said == 1:
            return {"message": "Could you tell me what the first item is and what the items cost in total?"}
        return {"message": "No, that's all. Thank you! ###STOP###"}

    return policy


def _call(name: str, **arguments: Any) -> ScriptedToolCalls:
    # outputs={"response": ""} keeps ChatAdapter's parse happy (else it retries with JSONAdapter)
    call = ScriptedToolCall(name=name, arguments=arguments)
    return ScriptedToolCalls(calls=[call], outputs={"response": ""})


def _reply(text: str) -> dict[str, Any]:
    return {"response": text, "tool_calls": []}


def assistant_policy(req: ScriptedRequest) -> dict[str, Any] | ScriptedToolCalls:
    """The agent: three lookups, a reply, two more lookups, a reply (state read off the transcript)."""
    dialogue = req.inputs.get("dialogue", "")
    results = dict(zip(_CALL.findall(dialogue), _RESULT.findall(dialogue), strict=False))
    replies = len(_YOU.findall(dialogue)) - 1  # the greeting is the first "you:" line
    said = "\n".join(_USER_LINE.findall(dialogue))
    if replies <= 0:
        found = next((v for k, v in results.items() if k.startswith("find_user_id")), None)
        if found is None:
            if m := _NAME_ZIP.search(said):
                return _call("find_user_id_by_name_zip", first_name=m.group(1), last_name=m.group(2),
                             zip=m.group(3))
            m = _EMAIL.search(said)
            return _call("find_user_id_by_email", email=m.group(0) if m else "unknown@example.com")
        if "get_user_details" not in results:
            user_id = "unknown" if found.startswith("Error") else found.strip()
            return _call("get_user_details", user_id=user_id)
        if "get_order_details" not in results:
            m = _ORDER.search(said) or _ORDER.search(results["get_user_details"])
            return _call("get_order_details", order_id=m.group(0) if m else "#W0000000")
        order = results["get_order_details"]
        status = m.group(1) if (m := _STATUS.search(order)) else "unknown"
        items = len(_PRODUCT.findall(order))
        return _reply(f"Thank you, you are verified. That order is {status} and has {items} item(s). "
                      "What would you like to know about it?")
    order = results.get("get_order_details", "")
    if replies == 1 and "get_product_details" not in results:
        m = _PRODUCT.search(order)
        return _call("get_product_details", product_id=m.group(1) if m else "0000000000")
    if replies == 1 and "calculate" not in results:
        return _call("calculate", expression=" + ".join(_PRICE.findall(order)) or "0")
    if replies == 1:
        name = m.group(1) if (m := _NAME.search(results["get_product_details"])) else "product"
        return _reply(f"The first item is a {name}; the items total {results['calculate']} USD. "
                      "Anything else I can help with?")
    return _reply("Is there anything else I can help you with?")


# --- one process's share ----------------------------------------------------------------------------------


class Runner:
    """Everything one process needs: the domain, the episode list, the user plans."""

    def __init__(self, spec: dict[str, Any], episodes: int, *, gc_freeze: bool = False,
                 history: bool = True) -> None:
        started = time.monotonic()
        self.history = history
        self.domain = load_domain(spec)
        self.tasks, self.task_source = benchmark_tasks(self.domain, episodes)
        self.plans = {t.user_scenario.render().strip(): make_plan(t, self.domain) for t in self.tasks}
        asyncio.run(self.run(range(min(2, episodes)), latency=0.0, concurrency=2))  # warm-up
        gc.collect()
        if gc_freeze:  # the parsed DB, tasks and imported modules leave the collector's view
            gc.freeze()
        self.setup_s = time.monotonic() - started

    async def run(self, indices: Any, *, latency: float, concurrency: int) -> dict[str, Any]:
        """Run the episodes ``indices`` at ``concurrency``; wall and CPU of this process only."""
        tasks = [self.tasks[i] for i in indices]
        gc.collect()  # start every phase without the previous phase's garbage
        a_lm = scripted_lm(assistant_policy, latency_s=latency, model="scripted/assistant")
        u_lm = scripted_lm(user_policy(self.plans), latency_s=latency, model="scripted/user")
        orch = Orchestrator(self.domain, Assistant(lm=a_lm), UserSimulator(lm=u_lm))
        with dspy.context(disable_history=not self.history):
            cpu0, start = time.process_time(), time.monotonic()
            episodes = await orch.run_many(tasks, concurrency=concurrency)
            end, cpu1 = time.monotonic(), time.process_time()
        # every non-tool assistant/user message but the greeting is one LM call (retries would add more)
        turns = [sum(1 for m in ep.messages if m.role in ("user", "assistant")) - 1 for ep in episodes]
        return {
            "episodes": len(episodes),
            "concurrency": concurrency,
            "assistant_calls": a_lm.call_count,
            "user_calls": u_lm.call_count,
            "calls": a_lm.call_count + u_lm.call_count,
            "turns_min": min(turns, default=0),
            "turns_max": max(turns, default=0),
            "turns_total": sum(turns),
            "tool_errors": sum(ep.num_errors for ep in episodes),
            "terminations": dict(Counter(ep.termination_reason.value for ep in episodes)),
            "start": start,
            "end": end,
            "wall_s": end - start,
            "cpu_s": cpu1 - cpu0,
        }


def _worker_main(spec: dict[str, Any], episodes: int, options: dict[str, Any], commands: Any, results: Any,
                 barrier: Any) -> None:
    """A worker process: set up once, then run each phase it is sent after the common barrier."""
    try:
        runner = Runner(spec, episodes, **options)
        results.put(("ready", runner.setup_s))
        while (command := commands.get()) is not None:
            indices, latency, concurrency = command
            barrier.wait(timeout=WORKER_TIMEOUT_S)
            results.put(("done", asyncio.run(runner.run(indices, latency=latency, concurrency=concurrency))))
    except BaseException:  # noqa: BLE001 - report to the parent instead of dying silently
        results.put(("error", traceback.format_exc()))


class WorkerPool:
    """N spawned processes, each with its own event loop, driven phase by phase."""

    def __init__(self, spec: dict[str, Any], episodes: int, n: int, options: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")
        self.n = n
        self.barrier = ctx.Barrier(n)
        self.commands = [ctx.Queue() for _ in range(n)]
        self.results = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_worker_main, name=f"bench-worker-{w}", daemon=True,
                        args=(spec, episodes, options, self.commands[w], self.results[w], self.barrier))
            for w in range(n)
        ]
        for p in self.procs:
            p.start()

    def _get(self, w: int, kind: str) -> Any:
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while True:
            try:
                tag, payload = self.results[w].get(timeout=1.0)
            except queue.Empty:
                if not self.procs[w].is_alive():
                    raise RuntimeError(f"worker {w} died (exit code {self.procs[w].exitcode})") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {w} sent nothing for {WORKER_TIMEOUT_S:.0f} s") from None
                continue
            if tag == "error":
                raise RuntimeError(f"worker {w} failed:\n{payload}")
            if tag != kind:
                raise RuntimeError(f"worker {w}: expected {kind!r}, got {tag!r}")
            return payload

    def ready(self) -> list[float]:
        return [self._get(w, "ready") for w in range(self.n)]

    def run(self, shares: list[list[int]], slots: list[int], latency: float) -> list[dict[str, Any]]:
        for w in range(self.n):
            self.commands[w].put((shares[w], latency, slots[w]))
        return [self._get(w, "done") for w in range(self.n)]

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()


# --- measurement ------------------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def summarize(mode: str, shares: list[dict[str, Any]], latency: float, episodes: int,
              concurrency: int) -> dict[str, Any]:
    """Combine per-process results into one record with the ideal wall time and the ratios."""
    calls = sum(s["calls"] for s in shares)
    cpu = sum(s["cpu_s"] for s in shares)
    wall = max(s["end"] for s in shares) - min(s["start"] for s in shares)
    per_episode = calls / episodes if episodes else 0.0
    # wave formula per process (its own episodes and slots); the slowest process bounds the run
    ideal = max(math.ceil(s["episodes"] / s["concurrency"]) * (s["calls"] / s["episodes"]) * latency
                for s in shares if s["episodes"])
    ideal_flow = calls * latency / concurrency
    terminations: Counter[str] = Counter()
    for s in shares:
        terminations.update(s["terminations"])
    return {
        "mode": mode,
        "processes": len(shares),
        "latency_s": latency,
        "episodes": episodes,
        "concurrency": concurrency,
        "concurrency_per_process": [s["concurrency"] for s in shares],
        "calls": calls,
        "assistant_calls": sum(s["assistant_calls"] for s in shares),
        "user_calls": sum(s["user_calls"] for s in shares),
        "calls_per_episode": per_episode,
        "turns_per_episode": [min(s["turns_min"] for s in shares), max(s["turns_max"] for s in shares)],
        "calls_equal_turns": calls == sum(s["turns_total"] for s in shares),
        "tool_errors": sum(s["tool_errors"] for s in shares),
        "terminations": dict(terminations),
        "all_user_stop": terminations.get("user_stop", 0) == episodes,
        "wall_s": wall,
        "ideal_s": ideal if latency else 0.0,
        "ideal_formula": "max over processes of ceil(episodes_p / slots_p) x calls_per_episode x latency",
        "ideal_flow_s": ideal_flow,
        "ideal_flow_formula": "calls x latency / concurrency",
        "ratio": (ideal / wall) if latency and wall > 0 else None,
        "calls_per_s": calls / wall if wall > 0 else 0.0,
        "cpu_s": cpu,
        "cpu_ms_per_call": 1000 * cpu / calls if calls else 0.0,
        "cpu_utilization": cpu / (wall * len(shares)) if wall > 0 else 0.0,
        "per_process": [{k: s[k] for k in ("episodes", "concurrency", "calls", "wall_s", "cpu_s")}
                        for s in shares],
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_benchmark(episodes: int, latency: float, workers: int, concurrency: int, *, builtin: bool = False,
                  overhead: bool = True, gc_freeze: bool = True, history: bool = True,
                  log: Any = print) -> dict[str, Any]:
    """Measure single-process and worker-process runs side by side; returns the JSON record.

    Args:
        episodes: Episodes per run (tasks cycled).
        latency: Simulated seconds per LM call.
        workers: Worker processes of the ``workers`` runs.
        concurrency: Episodes in flight in total (split evenly over the workers).
        builtin: Use the built-in retail domain even when tau2 data is present.
        overhead: Also run both modes at latency 0 (CPU per call, CPU-bound ceiling).
        gc_freeze: ``gc.freeze()`` after each process's setup (imports, DB, tasks).
        history: Keep DSPy's LM history on (its default).
        log: Progress printer.
    """
    if episodes < 1 or workers < 1 or concurrency < workers or latency < 0:
        raise ValueError("need episodes >= 1, workers >= 1, concurrency >= workers, latency >= 0")
    spec = domain_spec(builtin)
    started, load_before = time.monotonic(), os.getloadavg()
    options = {"gc_freeze": gc_freeze, "history": history}
    pool = WorkerPool(spec, episodes, workers, options)
    try:
        runner = Runner(spec, episodes, **options)
        worker_setup = pool.ready()
        log(f"domain: retail ({spec['data_dir'] or 'built-in'}), {runner.task_source}; "
            f"setup {runner.setup_s:.1f} s here, {max(worker_setup):.1f} s per worker")
        shares = [list(range(w, episodes, workers)) for w in range(workers)]
        slots = [min(c, max(1, len(s))) for c, s in zip(split(concurrency, workers), shares, strict=True)]
        runs: dict[str, Any] = {}
        phases = [("single", latency), ("workers", latency)]
        if overhead:
            phases += [("single_overhead", 0.0), ("workers_overhead", 0.0)]
        for name, lat in phases:
            if name.startswith("single"):
                out = [asyncio.run(runner.run(range(episodes), latency=lat, concurrency=concurrency))]
            else:
                out = pool.run(shares, slots, lat)
            runs[name] = r = summarize(name, out, lat, episodes, concurrency)
            ratio = f"  ratio {r['ratio']:.3f}" if r["ratio"] else ""
            log(f"  {name:<17} wall {r['wall_s']:6.2f} s  calls {r['calls']}  "
                f"cpu {r['cpu_ms_per_call']:.2f} ms/call{ratio}")
    finally:
        pool.close()
        if gc_freeze:
            gc.unfreeze()  # the parent may be a test process: give its objects back to the collector
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    best = runs["workers"]
    capacity = None
    if overhead:
        cpu_ms = runs["single_overhead"]["cpu_ms_per_call"]
        capacity = {
            "cpu_ms_per_call_zero_latency": cpu_ms,
            "needed_calls_per_s": best["calls"] / best["ideal_s"] if best["ideal_s"] else None,
            "single_max_calls_per_s": runs["single_overhead"]["calls_per_s"],
            "workers_max_calls_per_s": runs["workers_overhead"]["calls_per_s"],
            # the whole run's CPU at the zero-latency cost, spread over the usable cores
            "cpu_bound_wall_s_single": best["calls"] * cpu_ms / 1000,
            "cpu_bound_wall_s_workers": best["calls"] * cpu_ms / 1000 / min(workers, cores()),
        }
    return {
        "benchmark": "orchestrator",
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": cores(), "python": platform.python_version(), "platform": platform.platform(),
                    "dspy": getattr(dspy, "__version__", "?"), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "settings": {"episodes": episodes, "latency_s": latency, "workers": workers,
                     "concurrency": concurrency, "domain": "retail", "data_dir": spec["data_dir"],
                     "tasks": runner.task_source, "expected_calls_per_episode": TURNS, **options},
        "setup_s": {"parent": runner.setup_s, "workers": worker_setup},
        "runs": runs,
        "capacity": capacity,
        "children_cpu_s_total": children.ru_utime + children.ru_stime,
        "total_s": time.monotonic() - started,
        "target_ratio": TARGET_RATIO,
        "target_met": bool(best["ratio"] is not None and best["ratio"] >= TARGET_RATIO),
    }


def format_table(result: dict[str, Any]) -> str:
    head = f"{'run':<17}{'procs':>6}{'C':>5}{'calls':>7}{'wall s':>9}{'ideal s':>9}{'ratio':>7}" \
           f"{'calls/s':>9}{'cpu ms/call':>13}{'cpu util':>10}"
    lines = [head, "-" * len(head)]
    for r in result["runs"].values():
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        lines.append(f"{r['mode']:<17}{r['processes']:>6}{r['concurrency']:>5}{r['calls']:>7}{r['wall_s']:>9.2f}"
                     f"{r['ideal_s']:>9.2f}{ratio:>7}{r['calls_per_s']:>9.0f}{r['cpu_ms_per_call']:>13.2f}"
                     f"{r['cpu_utilization']:>10.2f}")
    cap = result["capacity"]
    if cap and cap["needed_calls_per_s"]:
        lines.append(f"capacity: needs {cap['needed_calls_per_s']:.0f} calls/s; CPU-bound ceiling "
                     f"{cap['single_max_calls_per_s']:.0f} calls/s in one process, "
                     f"{cap['workers_max_calls_per_s']:.0f} with the workers")
    ratio = result["runs"]["workers"]["ratio"]
    shown = "-" if ratio is None else f"{ratio:.3f}"
    lines.append(f"target: workers ratio >= {result['target_ratio']}: "
                 f"{'met' if result['target_met'] else 'NOT met'} ({shown})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_orchestrator",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=DEFAULTS["episodes"])
    parser.add_argument("--latency", type=float, default=DEFAULTS["latency"], help="simulated LM latency (s)")
    parser.add_argument("--workers", type=int, default=DEFAULTS["workers"], help="worker processes")
    parser.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"],
                        help="episodes in flight, in total over all processes")
    parser.add_argument("--builtin", action="store_true", help="the built-in retail domain, not tau2 data")
    parser.add_argument("--no-overhead", action="store_true", help="skip the zero-latency runs")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="do not gc.freeze() the long-lived objects after each process's setup")
    parser.add_argument("--no-history", action="store_true", help="run with dspy disable_history=True")
    parser.add_argument("--json", type=Path, default=None, help="write the result record here")
    args = parser.parse_args(argv)
    result = run_benchmark(args.episodes, args.latency, args.workers, args.concurrency,
                           builtin=args.builtin, overhead=not args.no_overhead,
                           gc_freeze=not args.no_gc_freeze, history=not args.no_history)
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
