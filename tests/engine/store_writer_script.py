"""A run-store writer for the kill test: ``python tests/store_writer_script.py DIR N [SLEEP]``.

Appends, for i in 0..N-1, a task record ``task-i`` and a dialogue record ``dlg-i`` with tiny
sleeps, skipping work keys already stored (the resume path of a real engine). The test kills it
with SIGKILL mid-way and then runs it again to finish. Prints ``skipped=S appended=A`` at the end.
Also imported by ``tests/test_store.py`` for its record builders.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eigendspy.core.messages import Message, ToolCall  # noqa: E402
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan  # noqa: E402
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord, Usage, Verdict  # noqa: E402
from eigendspy.core.task import Action, EvaluationCriteria, Task, UserScenario  # noqa: E402

SHARD_BYTES = 16 * 1024  # small, so the kill and the resume also cross shard boundaries


def plan(plan_id: str = "p0") -> PlanPair:
    return PlanPair(
        plan_id=plan_id,
        synthesis=SynthesisPlan(
            intent_family="cancel a pending order",
            complexity="single_action",
            tool_pattern="find user -> cancel",
            user_style="terse",
        ),
        evaluation=EvaluationPlan(rubric="cancels only after confirmation", failure_types=["no confirmation"]),
    )


def make_task(
    i: int, *, accepted: bool = True, reasons: tuple[str, ...] = (), plan_id: str = "p0", blame: str = "none"
) -> TaskRecord:
    usage = Usage()
    usage.add("generator", prompt_tokens=100 + i, completion_tokens=10)
    task = Task(
        id=f"t{i}",
        user_scenario=UserScenario(instructions=f"Cancel order #W{i:07d}."),
        evaluation_criteria=EvaluationCriteria(
            actions=[Action(action_id="a0", name="cancel_pending_order", arguments={"order_id": f"#W{i:07d}"})]
        ),
    )
    return TaskRecord(
        work_key=f"task-{i}",
        stream=0,
        round=0,
        plan=plan(plan_id),
        task=task,
        accepted=accepted,
        stage=Stage.ACCEPT if accepted else Stage.VALIDATE_TASK,
        reasons=list(reasons),
        validation=Verdict(passed=accepted, reasons=list(reasons), blame=blame),
        usage=usage,
    )


def make_dialogue(
    i: int, *, accepted: bool = True, reasons: tuple[str, ...] = (), plan_id: str = "p0", blame: str = "none"
) -> DialogueRecord:
    usage = Usage()
    usage.add("assistant", calls=2, prompt_tokens=500, completion_tokens=40, cost=0.001)
    usage.add("user", prompt_tokens=300, completion_tokens=20)
    call = ToolCall(id="c1", name="cancel_pending_order", arguments={"order_id": f"#W{i:07d}"})
    messages = [
        Message.assistant("Hi! How can I help?"),
        Message.user(f"Cancel order #W{i:07d} please, ünïcode ok"),
        Message.assistant(tool_calls=[call]),
        Message(role="tool", id="c1", content="{}", requestor="assistant"),
        Message.assistant("Done."),
        Message.user("###STOP###"),
    ]
    return DialogueRecord(
        work_key=f"dlg-{i}",
        task_id=f"t{i}",
        plan_id=plan_id,
        trial=0,
        seed=i,
        domain="retail",
        messages=messages,
        termination_reason="user_stop",
        reward=float(accepted),
        checker_passed=accepted,
        validator=Verdict(passed=accepted, reasons=list(reasons), blame=blame),
        accepted=accepted,
        stage=Stage.ACCEPT if accepted else Stage.CHECK,
        reasons=list(reasons),
        usage=usage,
        extra={"i": i},
    )


def main(root: str, n: int, sleep: float = 0.01) -> None:
    from eigendspy.engine.store.store import RunManifest, RunStore

    store = RunStore.create(
        root, RunManifest(config={"n": n}, seed=0, domain="retail"), resume=True, max_shard_bytes=SHARD_BYTES
    )
    done = {"task": store.done_keys("task"), "dialogue": store.done_keys("dialogue")}
    skipped = appended = 0
    for i in range(n):
        for record in (make_task(i), make_dialogue(i)):
            if record.work_key in done[record.kind]:
                skipped += 1
                continue
            appended += store.append(record)
            time.sleep(sleep)
    store.close()
    print(f"skipped={skipped} appended={appended}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *(float(a) for a in sys.argv[3:4]))
