"""Scripted LMs for every data-engine role (mock and retail), with optional fault injection.

For tests, notebooks run in CI, and trying the engine with no model at all. Each policy reads
the request's input fields the way a real model reads its prompt and answers in the role's
output format. They are deliberately simple — they make correct tasks from the sampled entities
and the user/assistant play them out — so what runs for real is the engine: validation by
execution, filters, rollouts, checkers, storage and resume.
"""

from __future__ import annotations

import functools
import json
import pickle
import re
import threading
import zlib
from collections.abc import Callable

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.reflector import Reflector
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import TrajectoryValidator
from eigendspy.engine.config import Roles
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls, scripted_lm

INTENTS = ["complete a pending task", "cancel a pending order", "finish an open to-do", "stop an order"]


def planner(req):
    n = int(re.search(r"\d+", req.inputs.get("n", "2")).group()) if req.inputs.get("n") else 2
    return {"plans": [
        {"synthesis": {"intent_family": INTENTS[i % len(INTENTS)] + f" #{i}", "complexity": "multi_step",
                       "tool_pattern": "look up -> write", "user_style": "polite", "edge_case": "none"},
         "evaluation": {"rubric": "the write happens after identification", "failure_types": ["wrong id"]}}
        for i in range(n)]}


def generator(req):
    ent = req.inputs.get("entities", "")
    if "task_id" in ent:  # mock
        pending = re.findall(r'"task_id":"(task_\d+)"[^\n]*"status":"pending"', ent)
        task_id = pending[0] if pending else re.findall(r'"task_id":"(task_\d+)"', ent)[0]
        return {"task": {
            "persona": "a busy team member", "reason_for_call": f"You finished {task_id} and want it marked done.",
            "known_info": f"The task id is {task_id}.", "unknown_info": "",
            "task_instructions": f"Ask the agent to mark {task_id} as completed. Stop once it confirms.",
            "actions": [{"name": "update_task_status", "arguments": {"task_id": task_id, "status": "completed"}}],
            "communicate_info": ["completed"], "reward_basis": ["DB", "COMMUNICATE"], "state_predicates": []}}
    orders = re.findall(r'"order_id":"(#W\d+)","user_id":"(\w+)","status":"pending"', ent)
    emails = dict(re.findall(r'"user_id":"(\w+)","email":"([^"]+)"', ent))
    pick = next(((o, u) for o, u in orders if u in emails), None)
    if pick is None:
        return {"task": {"persona": "x", "reason_for_call": "x", "known_info": "x", "task_instructions": "x",
                         "actions": [{"name": "cancel_pending_order",
                                      "arguments": {"order_id": "#W0000000", "reason": "no longer needed"}}]}}
    order, user = pick
    return {"task": {
        "persona": "a customer", "reason_for_call": f"You want to cancel order {order}; you no longer need it.",
        "known_info": f"Your email is {emails[user]}. The order id is {order}.", "unknown_info": "",
        "task_instructions": f"Ask to cancel {order} because it is no longer needed; confirm with yes.",
        "actions": [{"name": "find_user_id_by_email", "arguments": {"email": emails[user]}},
                    {"name": "get_order_details", "arguments": {"order_id": order}},
                    {"name": "cancel_pending_order", "arguments": {"order_id": order, "reason": "no longer needed"}}],
        "communicate_info": ["cancelled"], "reward_basis": ["DB", "COMMUNICATE"], "state_predicates": []}}


def task_judge(req):
    return {"policy_consistent": True, "solvable": True, "scenario_sufficient": True, "reasons": []}


def user(req):
    scenario, dialogue = req.inputs.get("scenario", ""), req.inputs.get("dialogue", "")
    if "completed" in dialogue.split("agent:")[-1] or "cancelled" in dialogue.split("agent:")[-1]:
        return {"message": "Thank you! ###STOP###"}
    if (task := re.search(r"task_\d+", scenario)) is not None:
        return {"message": f"Please mark {task.group()} as completed."}
    order = re.search(r"#W\d+", scenario).group()
    email = re.search(r"[\w.]+@[\w.]+\w", scenario).group()
    return {"message": f"Hi, I want to cancel order {order}, I no longer need it. My email is {email}."}


def assistant(req):
    dialogue = req.inputs.get("dialogue", "")
    results = dialogue.count("[tool result")
    if (task := re.search(r"mark (task_\d+)", dialogue)) is not None:
        if results == 0:
            return ScriptedToolCalls(calls=[ScriptedToolCall(name="update_task_status", arguments={
                "task_id": task.group(1), "status": "completed"})], outputs={"response": ""})
        return {"response": f"Done: {task.group(1)} is now completed.", "tool_calls": []}
    order = re.search(r"#W\d+", dialogue).group()
    email = re.search(r"[\w.]+@[\w.]+\w", dialogue).group()
    steps = [("find_user_id_by_email", {"email": email}), ("get_order_details", {"order_id": order}),
             ("cancel_pending_order", {"order_id": order, "reason": "no longer needed"})]
    if results < len(steps):
        name, args = steps[results]
        return ScriptedToolCalls(calls=[ScriptedToolCall(name=name, arguments=args)], outputs={"response": ""})
    return {"response": f"Your order {order} has been cancelled.", "tool_calls": []}


def trajectory_judge(req):
    return {"passed": True, "blame": "none", "reasons": []}


def reflector(req):
    return {"revised": {"synthesis": {"intent_family": "complete a pending task (revised)", "complexity":
                                      "multi_step", "tool_pattern": "look up -> write", "user_style": "terse",
                                      "edge_case": "none"},
                        "evaluation": {"rubric": "write after identification", "failure_types": []}},
            "rationale": "tighten the plan"}


class Faulty:
    """About one request in ``every`` (chosen by its content, counted per role LM) times out or returns garbage,
    and only the first time it is asked: the engine's retry of the same request then succeeds.

    Why by content, not by call count: a count shared by concurrent streams lets one caller's retry land on the
    next faulty call by chance, depending on how the streams interleave; chosen by content, which requests fail
    (and so which items need retries) is the same on every run, and retries always absorb the faults.
    """

    def __init__(self, policy, every: int) -> None:
        self.policy, self.every = policy, every
        self.faulted: set[int] = set()
        self.lock = threading.Lock()

    def __call__(self, req):
        key = zlib.crc32(json.dumps(req.messages, sort_keys=True, default=str).encode())
        with self.lock:
            fault = key % self.every == 0 and key not in self.faulted
            if fault:
                self.faulted.add(key)
        if fault:
            if (key // self.every) % 2:
                raise TimeoutError("simulated LM timeout")
            return "%%% garbage, not the requested format %%%"
        return self.policy(req)


def scripted_roles(fault_every: int = 0, latency_s: float = 0.0, **policies) -> Roles:
    """Scripted roles; ``policies`` replaces any role's policy by name (e.g. ``user=...``)."""
    chosen = {"planner": planner, "generator": generator, "task_judge": task_judge, "user": user,
              "assistant": assistant, "trajectory_judge": trajectory_judge, "reflector": reflector, **policies}

    def lm(role):
        policy = chosen[role]
        return scripted_lm(Faulty(policy, fault_every) if fault_every else policy, latency_s=latency_s)

    return Roles(
        planner=MetaPlanner(lm=lm("planner")), generator=TaskGenerator(lm=lm("generator")),
        task_validator=TaskValidator(judge_lm=lm("task_judge")), user=UserSimulator(lm=lm("user")),
        assistant=Assistant(lm=lm("assistant")),
        trajectory_validator=TrajectoryValidator(lm=lm("trajectory_judge")), reflector=Reflector(lm=lm("reflector")),
    )


def scripted_roles_factory(fault_every: int = 0, latency_s: float = 0.0, **policies) -> Callable[[], Roles]:
    """A picklable zero-argument factory of `scripted_roles` with these arguments, for worker processes
    (`eigendspy.engine.processes.ProcessWorkerPool`, Ray): each worker builds its own LMs from it.

    Raises:
        TypeError: a policy cannot be pickled (a lambda or nested function: use a module-level function),
            here rather than in a worker process.
    """
    factory = functools.partial(scripted_roles, fault_every=fault_every, latency_s=latency_s, **policies)
    try:
        pickle.dumps(factory)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise TypeError(f"scripted roles for worker processes need module-level policies: {exc}") from exc
    return factory
