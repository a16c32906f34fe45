"""Small-model mode (eigendspy.lm.small_model and the roles' ``small_model`` switch), without the real model.

The schema tests check what the grammar will admit: they compile the JSON schema DSPy derives from
the typed outputs with xgrammar over a tiny local tokenizer and feed it candidate answers. The
end-to-end test lets a random tiny model decode a generator draft under that grammar: whatever it
writes must name a real write tool with every required argument, ids from the sampled rows.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import get_args

import dspy
import pydantic
import pytest
from dspy.adapters.json_adapter import _get_structured_outputs_response_format

from eigendspy.agents import Assistant, TaskValidator, TrajectoryValidator, UserSimulator
from eigendspy.agents.task_generator import TaskGenerator, small_task_draft
from eigendspy.agents.user_simulator import SMALL_CONFIRM, SMALL_STOP, small_utterances
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.participants import TurnContext
from eigendspy.core.task import Action, EvaluationCriteria, StructuredUserInstructions, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.entities import sample_entities
from eigendspy.engine.items import apply_modes
from eigendspy.lm.small_model import (
    bound_schema,
    completed_writes,
    dialogue_grounding,
    tool_call_union,
    values_from_text,
    write_specs,
)
from eigendspy.scoring.execution import execution_check
from eigendspy.signatures.task_generator import GenerateTask
from eigendspy.testing.lm import scripted_lm

DOMAIN = get_domain("mock", num_users=4, tasks_per_user=3)
ENTITIES = sample_entities(DOMAIN, random.Random("0:s0/r0/t0:0"), k=3, max_chars=1500)
WRITES = write_specs(list(DOMAIN.toolkit))


def _schema(annotation) -> dict:
    return pydantic.TypeAdapter(annotation).json_schema()


def _branches(schema: dict) -> dict[str, dict]:
    """``{variant name: its arguments schema}`` of a (union of) tool-call models."""
    defs = schema["$defs"]
    return {name: defs[d["properties"]["arguments"]["$ref"].split("/")[-1]]
            for name, d in defs.items() if name.endswith("Call") or "Call_" in name}


@pytest.fixture(scope="module")
def compiler(tiny_model_dir: Path):
    """An xgrammar compiler over the tiny local tokenizer (no model download)."""
    xgr = pytest.importorskip("xgrammar")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    return xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer)))


def _accepts(compiler, schema: dict, value) -> bool:
    import xgrammar as xgr

    matcher = xgr.GrammarMatcher(compiler.compile_json_schema(json.dumps(schema), any_whitespace=False))
    return matcher.accept_string(json.dumps(value)) and matcher.is_completed()


def test_entity_values_come_from_the_rows_shown():
    grounding = values_from_text(ENTITIES)
    shown = [json.loads(line) for line in ENTITIES.splitlines() if line.startswith("{")]
    assert grounding.values["user_id"] == [r["user_id"] for r in shown if "user_id" in r]
    assert grounding.values["task_id"] == [r["task_id"] for r in shown if "task_id" in r]
    assert grounding.rows[("task_id", grounding.values["task_id"][0])]["status"] in ("pending", "completed")


def test_tool_union_names_real_tools_with_required_grounded_arguments():
    grounding = values_from_text(ENTITIES)
    branches = _branches(_schema(list[tool_call_union(WRITES, grounding)]))
    create = branches["CreateTaskCall"]
    assert create["required"] == ["user_id", "title"]  # the optional description is left out
    assert create["properties"]["user_id"]["enum"] == grounding.values["user_id"]
    assert create["properties"]["title"]["minLength"] == 1
    update = branches["UpdateTaskStatusCall"]
    assert update["properties"]["task_id"]["enum"] == grounding.values["task_id"]


def test_no_op_variants_leave_out_the_rows_current_status():
    grounding = values_from_text(ENTITIES)
    branches = _branches(_schema(list[tool_call_union(WRITES, grounding, avoid_no_op=True)]))
    variants = {k: v for k, v in branches.items() if k.startswith("UpdateTaskStatusCall_")}
    assert len(variants) == len(grounding.values["task_id"])
    for args in variants.values():
        (task_id,) = [args["properties"]["task_id"]["const"]]
        current = grounding.rows[("task_id", task_id)]["status"]
        assert current not in (args["properties"]["status"].get("enum") or [args["properties"]["status"]["const"]])


def test_a_tool_whose_id_is_not_grounded_is_not_offered():
    only_users = values_from_text('{"user_id": "user_1"}')
    union = tool_call_union(WRITES, only_users)
    assert union.__name__ == "CreateTaskCall"  # update_task_status needs a task id: dropped
    assert tool_call_union(WRITES, values_from_text("no rows here")) is None


def test_generator_grammar_rejects_empty_arguments_and_invented_ids(compiler):
    draft = small_task_draft(WRITES, ENTITIES)
    signature = GenerateTask.with_updated_fields("task", type_=draft)
    schema = _get_structured_outputs_response_format(signature).model_json_schema()  # what DSPy sends
    user = values_from_text(ENTITIES).values["user_id"][0]

    def answer(args: dict) -> dict:
        return {"task": {"actions": [{"name": "create_task", "arguments": args}], "persona": "Ada"}}

    assert _accepts(compiler, schema, answer({"user_id": user, "title": "Demo prep"}))
    assert not _accepts(compiler, schema, answer({}))
    assert not _accepts(compiler, schema, answer({"user_id": "user_99", "title": "Demo prep"}))
    assert not _accepts(compiler, schema, answer({"user_id": user, "title": ""}))
    bad_tool = {"task": {"actions": [{"name": "get_users", "arguments": {}}], "persona": "Ada"}}
    assert not _accepts(compiler, schema, bad_tool)


def test_bound_schema_caps_free_strings_and_arrays_only():
    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "enum": ["x"]}, "c": {"type": "array", "items": {}},
        "d": {"type": "string", "maxLength": 5}}}
    bounded = bound_schema(schema, 40, 3)["properties"]
    assert bounded["a"]["maxLength"] == 40 and "maxLength" not in bounded["b"]
    assert bounded["c"]["maxItems"] == 3 and bounded["d"]["maxLength"] == 5
    assert "maxLength" not in schema["properties"]["a"]  # a copy


def test_dialogue_grounding_uses_what_the_user_said_and_the_tools_returned():
    known = {"task_id": ["task_1", "task_2", "task_3"], "user_id": ["user_1"]}
    messages = [
        Message(role="assistant", content="Is it task_2?"),  # the agent's own guess is not evidence
        Message(role="user", content='Please mark task_1 as completed, title "Budget review".'),
        Message(role="tool", id="c1", requestor="assistant", content='{"user_id": "user_7"}'),
    ]
    grounding = dialogue_grounding(known, messages)
    assert grounding.values == {"task_id": ["task_1"], "user_id": ["user_7"]}
    assert grounding.quoted == ["Budget review"]
    branches = _branches(_schema(list[tool_call_union(WRITES, grounding)]))
    assert branches["UpdateTaskStatusCall"]["properties"]["status"]["const"] == "completed"  # narrowed to what was said
    assert branches["CreateTaskCall"]["properties"]["title"]["const"] == "Budget review"


def test_completed_writes_counts_only_successful_calls():
    call = ToolCall(id="c1", name="update_task_status", arguments={})
    ok = [Message(role="assistant", tool_calls=[call]), Message(role="tool", id="c1", content="{}", error=False)]
    failed = [ok[0], Message(role="tool", id="c1", content="Error", error=True)]
    assert completed_writes(ok, WRITES) == {"update_task_status"}
    assert completed_writes(failed, WRITES) == set()


def test_random_tiny_model_drafts_an_executable_task_under_the_grammar(tiny_model_dir: Path):
    from eigendspy.lm.local.engine import local_lm

    lm = local_lm(tiny_model_dir, max_new_tokens=48, close_tokens=96, max_string_chars=40, max_array_items=2)
    gen = TaskGenerator(lm=lm, small_model=True)
    with dspy.context(adapter=dspy.JSONAdapter()):
        pred = gen(domain=DOMAIN, plan="any", entities=ENTITIES, task_id="t0")
    (action,) = pred.task.gold_actions
    spec = DOMAIN.toolkit[action.name]
    assert spec.mutates_state and set(action.arguments) == set(spec.required)
    assert all(str(v).strip() for v in action.arguments.values())
    ids = values_from_text(ENTITIES).values
    assert all(v in ids[k] for k, v in action.arguments.items() if k.endswith("_id"))
    assert execution_check(DOMAIN, pred.task).passed  # real ids, no no-op write
    assert pred.task.user_scenario.instructions.reason_for_call.startswith("You want the agent to ")


def _task(args: dict) -> Task:
    reason = 'You want the agent to update the status of a task (task_id "task_1", status "completed").'
    return Task(id="t", user_scenario=UserScenario(instructions=StructuredUserInstructions(
        domain="mock", reason_for_call=reason, known_info="task_id: task_1; status: completed; user_id: user_1",
        task_instructions="Answer briefly.")),
        evaluation_criteria=EvaluationCriteria(actions=[Action(action_id="a", name="update_task_status",
                                                               arguments=args)]))


def test_small_user_moves_through_request_facts_confirmation_and_goodbye():
    task = _task({"task_id": "task_1", "status": "completed"})
    first = small_utterances(task, [])
    assert first == ['Please update the status of a task (task_id "task_1", status "completed").',
                     "user_id: user_1.", SMALL_CONFIRM]  # no goodbye before the user has spoken
    later = small_utterances(task, [Message(role="user", content=first[0])])
    assert later == ["user_id: user_1.", SMALL_CONFIRM, SMALL_STOP]


def test_small_roles_answer_through_typed_outputs():
    task = _task({"task_id": "task_1", "status": "completed"})
    ctx = TurnContext(role="assistant", task=task, domain=DOMAIN, tools=DOMAIN.tool_schemas())
    said = [Message(role="assistant", content="Hi!"), Message(role="user", content="Please complete task_1.")]
    call = {"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}
    agent = Assistant(lm=scripted_lm([{"tool_calls": call, "response": "On it."}]), small_model=True)
    user = UserSimulator(lm=scripted_lm([{"message": SMALL_CONFIRM}]), small_model=True)
    with dspy.context(adapter=dspy.JSONAdapter()):
        msg = asyncio.run(agent.respond(said, ctx))
        reply = asyncio.run(user.respond(said, ctx.model_copy(update={"role": "user", "tools": []})))
    assert msg.tool_calls[0].name == "update_task_status" and msg.tool_calls[0].arguments == call["arguments"]
    assert reply.content == SMALL_CONFIRM
    after = [*said, msg, Message(role="tool", id=msg.tool_calls[0].id, content="{}", requestor="assistant")]
    signature = agent._small_signature(after, ctx)  # one call per user message: now it must talk
    assert signature.output_fields["tool_calls"].annotation is type(None)


def test_engine_modes_switch_the_roles_and_judges_off_pass_on_execution():
    roles = Roles.from_lms({})
    apply_modes(roles, EngineConfig(small_model=True, llm_judges=False))
    assert roles.generator.small_model and roles.assistant.small_model and roles.user.small_model
    current = DOMAIN.base_db().model.tasks["task_1"].status
    change = "pending" if current == "completed" else "completed"
    task = _task({"task_id": "task_1", "status": change})
    verdict = roles.task_validator(domain=DOMAIN, task=task).verdict  # no LM configured: none is called
    assert verdict.passed and "judge is off" in verdict.reasons[0]
    no_op = _task({"task_id": "task_1", "status": current})
    assert not TaskValidator(use_judge=False)(domain=DOMAIN, task=no_op).verdict.passed  # execution still decides
    assert TrajectoryValidator(use_judge=False)(domain=DOMAIN, task=task, messages=[]).verdict.passed


def _offered(signature) -> set[str]:
    """The tool names a small-model turn's ``tool_calls`` type allows."""
    found: set[str] = set()
    for arm in get_args(signature.output_fields["tool_calls"].annotation):
        for model in get_args(arm) or [arm]:
            if hasattr(model, "model_fields"):
                found |= set(get_args(model.model_fields["name"].annotation))
    return found


def test_a_write_an_ordering_rule_forbids_yet_is_not_offered_until_its_lookup_succeeded():
    """mock's rule: a successful get_users before create_task (the pre-checks reject the other order)."""
    ctx = TurnContext(role="assistant", task=None, domain=DOMAIN, tools=DOMAIN.tool_schemas())
    agent = Assistant(lm=scripted_lm([]), small_model=True)
    ask = Message(role="user", content="Create a task 'Buy milk' for user_1.")
    before = agent._small_signature([Message(role="assistant", content="Hi!"), ask], ctx)
    assert "create_task" not in _offered(before) and "get_users" in _offered(before)

    def looked_up(ok: bool) -> list[Message]:
        call = Message(role="assistant", tool_calls=[ToolCall(id="c1", name="get_users", arguments={})])
        answer = Message(role="tool", id="c1", content='[{"user_id": "user_1"}]' if ok else "Error: down",
                         requestor="assistant", error=not ok)
        return [Message(role="assistant", content="Hi!"), ask, call, answer, ask]

    assert "create_task" in _offered(agent._small_signature(looked_up(True), ctx))
    assert "create_task" not in _offered(agent._small_signature(looked_up(False), ctx))
