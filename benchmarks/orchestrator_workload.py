"""Workload of the orchestrator benchmark: the retail domain and tasks, the scripted user and assistant policies
(the deterministic ``TURNS``-call dialogue), one process's share of the episodes (`Runner`) and the spawned worker
processes (`WorkerPool`)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import multiprocessing as mp
import os
import queue
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from eigendspy.agents import Assistant, UserSimulator  # noqa: E402
from eigendspy.core.domain import Domain  # noqa: E402
from eigendspy.core.orchestrator import Orchestrator  # noqa: E402
from eigendspy.core.task import EvaluationCriteria, StructuredUserInstructions, Task, UserScenario  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.testing.lm import (  # noqa: E402
    ScriptedRequest,
    ScriptedToolCall,
    ScriptedToolCalls,
    render_answer,
    scripted_lm,
)

TURNS = 10  # LM calls per episode: 3 user turns, 5 assistant tool-call turns, 2 assistant replies
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
_CALL = re.compile(r"you \[tool call\] (\w+)\(")  # matched at a line's start
_RESULT = re.compile(r"\[tool result(?: ERROR)?\] (.*)")
_PRODUCT = re.compile(r'"product_id": "(\d+)"')
_PRICE = re.compile(r'"price": "?([\d.]+)')
_STATUS = re.compile(r'"status": "([\w ]+)"')
_NAME = re.compile(r'"name": "([^"]+)"')


class Transcript(NamedTuple):
    """What the scripted policies read off the dialogue, in one pass over its lines (a MULTILINE ``^`` regex
    tries every position of the text: four of them cost the scripted model more than the rest of its turn)."""

    calls: list[str]  # tool names, in order
    results: list[str]  # tool results, in order
    you: int  # agent lines
    user_lines: list[str]  # what the customer said

    @classmethod
    def read(cls, dialogue: str) -> Transcript:
        calls, results, user_lines, you = [], [], [], 0
        for line in dialogue.split("\n"):
            if line.startswith("you: "):
                you += 1
            elif line.startswith("user: "):
                user_lines.append(line[6:])
            elif m := _CALL.match(line):
                calls.append(m.group(1))
            elif m := _RESULT.match(line):
                results.append(m.group(1))
        return cls(calls, results, you, user_lines)


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
        said = Transcript.read(req.inputs.get("dialogue", "")).you
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
    seen = Transcript.read(dialogue)
    results = dict(zip(seen.calls, seen.results, strict=False))
    replies = seen.you - 1  # the greeting is the first "you:" line
    said = "\n".join(seen.user_lines)
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


class TimedEngine:
    """The scripted LM's async engine, timing its own CPU (``time.thread_time`` around its synchronous parts:
    building the request view, the policy, rendering the answer; not the simulated latency). The scripted engine
    stands in for a model server, so this share is reported apart from the CPU of the code under test."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.cpu_s = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def complete(self, request: Any) -> Any:
        sync = self.inner.sync
        t0 = time.thread_time()
        view, answer = sync._begin(request)
        self.cpu_s += time.thread_time() - t0
        if inspect.isawaitable(answer):
            answer = await answer
        if sync.latency_s:
            await asyncio.sleep(sync.latency_s)
        t0 = time.thread_time()
        response = render_answer(view, answer)
        self.cpu_s += time.thread_time() - t0
        return response


def timed(lm: dspy.LM) -> TimedEngine:
    """Wrap ``lm``'s async engine in a `TimedEngine` (the episodes run on the async path) and return it."""
    engine = TimedEngine(lm._async_engine_spec)
    lm._async_engine_spec = engine
    return engine


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
        engines = [timed(a_lm), timed(u_lm)]
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
            "engine_cpu_s": sum(e.cpu_s for e in engines),
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
    except BaseException:  # report to the parent instead of dying silently
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
