"""Small-model calls go through each role's registered predictor, so DSPy optimizers' traces see them.

Small-model mode types a role's output per call (`eigendspy.lm.small_model`). Were the call made on a
copy of the predictor, the trace would record the copy, which no optimizer can map back to the module's
``named_predictors()``: bootstrapped demos and GEPA's reflective examples would silently skip the call.
"""

from __future__ import annotations

import asyncio
import random

import dspy

from eigendspy.agents import Assistant, TaskGenerator, UserSimulator
from eigendspy.agents.user_simulator import SMALL_CONFIRM
from eigendspy.core.messages import Message
from eigendspy.core.participants import TurnContext
from eigendspy.core.task import Action, EvaluationCriteria, StructuredUserInstructions, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.entities import sample_entities
from eigendspy.testing.lm import scripted_lm

DOMAIN = get_domain("mock", num_users=4, tasks_per_user=3)
CALL = {"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}
SAID = [Message(role="assistant", content="Hi!"), Message(role="user", content="Please complete task_1.")]


def _task() -> Task:
    return Task(id="t", user_scenario=UserScenario(instructions=StructuredUserInstructions(
        domain="mock", reason_for_call='You want the agent to update the status of a task (task_id "task_1").',
        known_info="task_id: task_1", task_instructions="Answer briefly.")),
        evaluation_criteria=EvaluationCriteria(actions=[Action(action_id="a", **CALL)]))


def _ctx(role: str) -> TurnContext:
    tools = DOMAIN.tool_schemas() if role == "assistant" else []
    return TurnContext(role=role, task=_task(), domain=DOMAIN, tools=tools)


def _traced(run) -> list[tuple]:
    """The trace entries of one call, as an optimizer collects them."""
    with dspy.context(trace=[], adapter=dspy.JSONAdapter()):
        run()
        return list(dspy.settings.trace)


def _registered(module: dspy.Module) -> list[dspy.Predict]:
    return [p for _, p in module.named_predictors()]


def test_small_assistant_turn_is_traced_on_its_registered_predictor():
    agent = Assistant(lm=scripted_lm([{"tool_calls": CALL, "response": ""}]), small_model=True)
    (predictor, inputs, pred), = _traced(lambda: asyncio.run(agent.respond(SAID, _ctx("assistant"))))
    assert predictor is agent.turn and predictor in _registered(agent)
    assert pred.tool_calls.name == "update_task_status" and "task_1" in inputs["dialogue"]
    assert "tool_calls" in agent.turn.signature.output_fields  # the registered signature is untouched
    assert agent.turn.signature.output_fields["tool_calls"].annotation is dspy.ToolCalls


def test_small_user_turn_is_traced_on_its_registered_predictor():
    user = UserSimulator(lm=scripted_lm([{"message": SMALL_CONFIRM}]), small_model=True)
    (predictor, _, pred), = _traced(lambda: asyncio.run(user.respond(SAID, _ctx("user"))))
    assert predictor is user.turn and predictor in _registered(user)
    assert pred.message == SMALL_CONFIRM
    assert user.turn.signature.output_fields["message"].annotation is str


def test_small_task_draft_is_traced_on_its_registered_predictor():
    entities = sample_entities(DOMAIN, random.Random("0:s0/r0/t0:0"), k=3, max_chars=1500)
    row = next(line for line in entities.splitlines() if '"task_id":"task_6"' in line)
    status = "completed" if '"status":"pending"' in row else "pending"  # a write that changes the row
    answer = {"task": {"persona": "A busy manager.",
                       "actions": [{"name": "update_task_status",
                                    "arguments": {"task_id": "task_6", "status": status}}]}}
    gen = TaskGenerator(lm=scripted_lm([answer]), small_model=True)
    (predictor, inputs, _), = _traced(lambda: gen(domain=DOMAIN, plan="any", entities=entities, task_id="t0"))
    assert predictor is gen.generate and predictor in _registered(gen)
    assert inputs["allowed_tools"] == ["create_task", "update_task_status"] and "signature" not in inputs
