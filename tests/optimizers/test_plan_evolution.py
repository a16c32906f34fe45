"""Plan evolution on a scripted engine with two failure causes planted in the plan text.

The causes live in the *plans* the meta-planner writes, so only plan rewrites can remove them:

- ``tool_pattern`` says "skip lookup": the generator writes a status the task already has, the
  execution check rejects the no-op write ("... changes nothing ..."), and no repair helps because
  the plan keeps asking for it;
- ``user_style`` says "impatient": the simulated user says ###STOP### when the assistant asks for
  confirmation, before the write (the deterministic pre-check blames the user: premature stop).

The scripted Reflector reads only its ``failures`` input (the blamed failure reasons) and the
plan: no-op reasons -> look the status up first and target the tasks that are already completed
(reopen them: a new cell); premature-stop reasons -> a patient user. Blank the reasons (the
ablation) and it keeps the plan.
"""

from __future__ import annotations

import re
import threading

from eigendspy.agents.reflector import Reflector
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.records import Verdict
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.optimizers.plan_evolution import (
    BlankReasonsReflector,
    evolve_plans,
    plan_evolution_report,
    with_reflector_instructions,
)
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls
from eigendspy.testing.roles import scripted_roles

# (intent, tool pattern, user style) per stream: both causes, cause B only, cause A only, control.
STREAMS = [("complete a pending task #0", "skip lookup -> write", "impatient"),
           ("complete a pending task #1", "skip lookup -> write", "polite"),
           ("complete a pending task #2", "look up status -> write", "impatient"),
           ("complete a pending task #3", "look up status -> write", "polite")]
CONFIG = EngineConfig(domain="mock", streams=4, tasks_per_round=2, episodes_per_task=1, entities_k=6, seed=0)
_PLAN = re.compile(r"intent: (?P<intent_family>.*?); complexity: (?P<complexity>.*?); tools: (?P<tool_pattern>.*?); "
                   r"user: (?P<user_style>.*?); edge case: (?P<edge_case>.*?)\. Judge by: (?P<rubric>.*?); "
                   r"watch for: (?P<watch>.*)$", re.S)


def domain():
    return get_domain("mock", num_users=40, tasks_per_user=5)


def planner(req):
    return {"plans": [{"synthesis": {"intent_family": i, "complexity": "single_action", "tool_pattern": t,
                                     "user_style": u, "edge_case": "none"},
                       "evaluation": {"rubric": "confirm, then write", "failure_types": []}} for i, t, u in STREAMS]}


class Generator:
    """Builds a status-change task from the shown rows, following the plan; never reuses a task id."""

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, req):
        plan = _PLAN.search(req.inputs["plan"])
        rows = re.findall(r'"task_id":"(task_\d+)"[^\n]*"status":"(\w+)"', req.inputs["entities"])
        with self.lock:
            fresh = [(t, s) for t, s in rows if t not in self.used] or rows
            if "skip lookup" in plan["tool_pattern"]:  # planted cause B: writes without looking: a no-op
                tid, status = fresh[0]
            else:
                want = "completed" if plan["intent_family"].startswith("reopen") else "pending"
                match = [t for t, s in fresh if s == want]
                tid, status = (match[0], "pending" if want == "completed" else "completed") if match else fresh[0]
            self.used.add(tid)
        return {"task": {
            "persona": f"A team member; style: {plan['user_style']}.", "reason_for_call": f"You want {tid} marked "
            f"{status}.", "known_info": f"The task id is {tid}.", "unknown_info": "",
            "task_instructions": f"Ask for {tid} to be set to {status}.",
            "actions": [{"name": "update_task_status", "arguments": {"task_id": tid, "status": status}}],
            "communicate_info": [status], "reward_basis": ["DB", "COMMUNICATE"], "state_predicates": []}}


def user(req):
    scenario, dialogue = req.inputs.get("scenario", ""), req.inputs.get("dialogue", "")
    last = dialogue.split("agent:")[-1] if "agent:" in dialogue else ""
    if "Done:" in last:
        return {"message": "Thank you! ###STOP###"}
    if "proceed" in last:  # planted cause A: an impatient user quits at the confirmation question
        return {"message": "Never mind, no time for this. ###STOP###" if "impatient" in scenario else "Yes, go ahead."}
    tid, status = re.search(r"You want (task_\d+) marked (\w+)", scenario).groups()
    return {"message": f"Please set {tid} to {status}."}


def assistant(req):
    dialogue = req.inputs.get("dialogue", "")
    tid, status = re.search(r"set (task_\d+) to (\w+)", dialogue).groups()
    if "[tool result" in dialogue:
        return {"response": f"Done: {tid} is now {status}.", "tool_calls": []}
    if "proceed" in dialogue and re.search(r"\byes\b", dialogue.split("proceed")[-1], re.I):
        return ScriptedToolCalls(calls=[ScriptedToolCall(name="update_task_status", arguments={
            "task_id": tid, "status": status})], outputs={"response": ""})
    return {"response": f"I can set {tid} to {status}. Shall I proceed?", "tool_calls": []}


class ReasonReflector:
    """Rewrites a plan from the failure reasons in its input only (records every input it saw)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def __call__(self, req):
        self.seen.append(dict(req.inputs))
        plan, failures = _PLAN.search(req.inputs["plan"]).groupdict(), req.inputs["failures"]
        watch = [w.strip() for w in plan.pop("watch").split(",") if w.strip() not in ("", "-")]
        rubric, why = plan.pop("rubric"), []
        if "changes nothing" in failures:  # no-op writes: look first; the already-completed tasks are a new intent
            plan["tool_pattern"] = "look up status -> write"
            plan["intent_family"] = plan["intent_family"].replace("complete a pending", "reopen a completed")
            why.append("no-op writes")
        if "ended the dialogue with ###STOP###" in failures:
            plan["user_style"] = "patient, answers confirmation questions"
            watch.append("premature stop")
            why.append("premature stops")
        return {"revised": {"synthesis": plan, "evaluation": {"rubric": rubric, "failure_types": watch}},
                "rationale": "fixed " + " and ".join(why) if why else "no cause identified: plan kept"}


def roles(reflector):
    out = scripted_roles(planner=planner, generator=Generator(), user=user, assistant=assistant, reflector=reflector)
    out.planner.overlap_threshold = 1.0  # the four streams share an intent on purpose (they differ in planted causes)
    return out


def test_plan_evolution_removes_planted_causes_only_from_reasons(tmp_path):
    seen, blank = ReasonReflector(), ReasonReflector()
    evolved = evolve_plans(domain(), roles(seen), CONFIG, tmp_path / "evolved", rounds=3)
    ablated = evolve_plans(domain(), roles(blank), CONFIG, tmp_path / "ablated", rounds=3, ablate_reasons=True)
    print("\n" + evolved.to_markdown() + "\n" + ablated.to_markdown())  # the measured numbers, with -s

    first, last = evolved.per_round[0], evolved.per_round[-1]
    assert last.stream_yield > first.stream_yield and evolved.yields == sorted(evolved.yields)
    assert last.stream_yield == 1.0 and first.stream_yield == 0.25  # only the control stream yields in round 1
    assert last.cells_covered > first.cells_covered
    assert last.cells_planned_cumulative > first.cells_planned_cumulative
    # the ablation: same engine, same reflector LM, blank reasons -> plans kept, no gain
    assert ablated.yields == [first.stream_yield] * 3
    assert [r.cells_covered for r in ablated.per_round] == [first.cells_covered] * 3
    assert ablated.per_round[-1].cells_planned_cumulative == first.cells_planned_cumulative
    # the reflector only ever had the reasons it was given
    assert any("changes nothing" in s["failures"] for s in seen.seen)
    assert any("###STOP###" in s["failures"] for s in seen.seen)
    assert blank.seen and all("(no reason given)" in s["failures"] and "changes nothing" not in s["failures"]
                              for s in blank.seen)
    # lineage: stream 0 carried both causes and lost one per round, each plan linked to its parent
    s0 = [n for n in evolved.lineage if n.stream == 0]
    assert [n.parent_id for n in s0] == [None, s0[0].plan_id, s0[1].plan_id]
    assert set(s0[1].changes) == {"intent_family", "tool_pattern"} and "user_style" in s0[2].changes
    assert [s.stream_yield for s in evolved.per_stream if s.round == 2] == [1.0] * 4

    run = tmp_path / "evolved"
    assert (run / "plan_evolution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 3 |" in (run / "plan_evolution.md").read_text()
    assert plan_evolution_report(run).per_round == evolved.per_round  # rebuilt from the stored run alone
    notes = (run / "manifest.json").read_text()
    assert '"plan_evolution"' in notes and '"reflector-module"' in notes


def _plan() -> PlanPair:
    return PlanPair(plan_id="p0_0", synthesis=SynthesisPlan(intent_family="x", complexity="single_action",
                                                            tool_pattern="a -> b", user_style="polite"),
                    evaluation=EvaluationPlan(rubric="r"))


def test_blank_reasons_keep_blame_and_instructions_are_evolvable():
    seen: list = []

    def policy(req):
        seen.append((req.instructions, req.inputs["failures"]))
        return {"revised": {"synthesis": _plan().synthesis.model_dump(), "evaluation": {"rubric": "r"}},
                "rationale": "kept"}

    failures = [Verdict(passed=False, reasons=["the user ended the dialogue early"], blame="user")]
    base = scripted_roles(reflector=policy)
    BlankReasonsReflector(base.reflector)(plan=_plan(), failures=failures)
    assert seen[-1][1] == "- blame=user: (no reason given)"
    evolved = with_reflector_instructions(base, "Fix whatever the failure reasons name.")
    pred = evolved.reflector(plan=_plan(), failures=failures)
    assert seen[-1] == ("Fix whatever the failure reasons name.", "- blame=user: the user ended the dialogue early")
    assert pred.plan.parent_id == "p0_0" and isinstance(evolved.reflector, Reflector)
    assert base.reflector.reflect.signature.instructions != "Fix whatever the failure reasons name."
