"""Role calls to a vLLM server ask for structured outputs: the role's JSON schema and a sized ``max_tokens``.

Over real HTTP against a scripted OpenAI-compatible chat server (the request bodies are what vLLM would
receive); the real server is in ``test_structured_outputs_real_vllm.py`` (``vllm`` marker).
"""

from __future__ import annotations

import json
from typing import Any, Literal

import dspy
import pytest

from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.domains import get_domain
from eigendspy.lm.cached_adapter import CachedChatAdapter, CachedJSONAdapter
from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms
from eigendspy.lm.structured_outputs import (
    StructuredOutputs,
    max_json_chars,
    structured_format,
    structured_outputs_of,
)
from eigendspy.testing.chat_app import ChatApp

# every test here on an in-memory DSPy cache of its own
pytestmark = pytest.mark.usefixtures("fresh_cache")


def vllm_role(api_base: str, **spec: Any) -> dspy.LM:
    config = RoleLMConfig(default=LMSpec(model="vllm-server/smol", api_base=api_base, temperature=0.0, num_retries=0,
                                         **spec))
    return build_role_lms(config, local_factory=lambda: None)["planner"]


class Pick(dspy.Signature):
    """Pick one task for the user."""

    request: str = dspy.InputField()
    task_id: Literal["task_3", "task_7"] = dspy.OutputField()
    note: str = dspy.OutputField()


def test_a_role_call_sends_its_schema_with_grounded_enums_and_a_sized_budget(serve_app):
    app = ChatApp('{"task_id": "task_7", "note": "done"}')
    lm = vllm_role(serve_app(app), max_string_chars=40, max_array_items=2)
    with dspy.context(lm=lm, adapter=CachedChatAdapter()):  # the engine's adapter hands the call to JSON
        pred = dspy.Predict(Pick)(request="close task 7")
    assert (pred.task_id, pred.note) == ("task_7", "done")
    body = app.bodies[0]
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["task_id"]["enum"] == ["task_3", "task_7"]
    assert schema["properties"]["note"]["maxLength"] == 40
    assert schema["required"] == ["task_id", "note"] and schema["additionalProperties"] is False
    # {"task_id":"task_3","note":"<40 chars>"}: 28 + 42 characters, plus the 16-token margin
    assert max_json_chars(schema) == 70 and body["max_tokens"] == 86
    assert "[[ ## task_id ## ]]" not in json.dumps(body["messages"])  # JSON adapter prompt, not the chat format


def test_the_spec_max_tokens_caps_the_budget_and_an_unbounded_schema_gets_it(serve_app):
    app = ChatApp('{"task_id": "task_3", "note": "a long free note"}')
    lm = vllm_role(serve_app(app), max_tokens=300)
    with dspy.context(lm=lm, adapter=CachedChatAdapter()):
        dspy.Predict(Pick)(request="x")
    assert "maxLength" not in app.bodies[0]["response_format"]["json_schema"]["schema"]["properties"]["note"]
    assert app.bodies[0]["max_tokens"] == 300


def test_structured_outputs_off_keeps_the_chat_format(serve_app):
    app = ChatApp("[[ ## task_id ## ]]\ntask_3\n\n[[ ## note ## ]]\nok\n\n[[ ## completed ## ]]")
    lm = vllm_role(serve_app(app), structured_outputs=False)
    assert structured_outputs_of(lm) is None
    with dspy.context(lm=lm, adapter=CachedChatAdapter()):
        assert dspy.Predict(Pick)(request="x").task_id == "task_3"
    assert "response_format" not in app.bodies[0]


def test_native_tool_calls_are_left_to_the_server_tool_parser(serve_app):
    class Act(dspy.Signature):
        """Act."""

        request: str = dspy.InputField()
        tools: list[dspy.Tool] = dspy.InputField()
        answer: str = dspy.OutputField()
        tool_calls: dspy.ToolCalls = dspy.OutputField()

    app = ChatApp('{"answer": "hi"}')
    lm = vllm_role(serve_app(app), max_string_chars=40, max_array_items=2)
    tool = dspy.Tool(lambda user_id: user_id, name="get_user", desc="Look a user up.",
                     args={"user_id": {"type": "string"}})
    with dspy.context(lm=lm, adapter=CachedJSONAdapter()):
        assert dspy.Predict(Act)(request="x", tools=[tool]).answer == "hi"
    body = app.bodies[0]
    assert "response_format" not in body  # a schema would forbid the tool-call tags vLLM's parser reads
    assert [t["function"]["name"] for t in body["tools"]] == ["get_user"]


def test_the_meta_planner_parses_a_constrained_plan_list(serve_app):
    plan = {"synthesis": {"intent_family": "close a task", "complexity": "single_action",
                          "tool_pattern": "update_task_status", "user_style": "terse", "edge_case": "none"},
            "evaluation": {"rubric": "closes the right task", "failure_types": ["wrong task"]}}
    app = ChatApp(json.dumps({"plans": [plan]}))
    for bounds, expect_ceiling in (((40, 2), False), ((160, 3), True)):
        lm = vllm_role(serve_app(app), max_string_chars=bounds[0], max_array_items=bounds[1])
        with dspy.context(adapter=CachedChatAdapter()):
            pred = MetaPlanner(lm=lm)(domain=get_domain("mock"), n=1)
        assert [p.synthesis.tool_pattern for p in pred.plans] == ["update_task_status"]
        body = app.bodies[-1]
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["plans"]["maxItems"] == bounds[1]
        assert schema["$defs"]["SynthesisPlan"]["properties"]["complexity"]["enum"]  # the plan cell's enums
        # 3 plans of 160-character strings may need more than the 2048-token ceiling: then the ceiling
        assert body["max_tokens"] == (2048 if expect_ceiling else max_json_chars(schema) + 16)
        assert (max_json_chars(schema) + 16 > 2048) == expect_ceiling


def test_the_format_is_built_once_per_signature_and_policy(serve_app):
    app = ChatApp('{"task_id": "task_3", "note": "ok"}')
    lm = vllm_role(serve_app(app), max_string_chars=40, max_array_items=2)
    adapter = CachedJSONAdapter()
    with dspy.context(lm=lm, adapter=adapter, cache=False):
        for request in ("a", "b"):
            dspy.Predict(Pick)(request=request)
    stats = adapter.cache_stats()["response_format"]
    assert (stats.misses, stats.hits) == (1, 1)
    assert app.bodies[0]["response_format"] == app.bodies[1]["response_format"]


def test_max_json_chars_bounds():
    assert max_json_chars({"type": "string"}) is None
    assert max_json_chars({"type": "array", "items": {"type": "boolean"}}) is None
    assert max_json_chars({"type": "array", "items": {"type": "boolean"}, "maxItems": 3}) == 2 + 3 * 5 + 2
    assert max_json_chars({"anyOf": [{"type": "null"}, {"enum": ["ab", "abcd"]}]}) == 6
    obj = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    assert max_json_chars(obj) == 2 + 4 + 24
    assert max_json_chars({**obj, "additionalProperties": True}) is None
    recursive = {"$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}},
                                 "additionalProperties": False}}, "$ref": "#/$defs/N"}
    assert max_json_chars(recursive) is None


def test_structured_format_keeps_json_mode_and_checks_bounds():
    policy = StructuredOutputs(max_tokens=123)
    found = structured_format(policy, {"type": "json_object"})
    assert found is not None and found.response_format == {"type": "json_object"} and found.max_tokens == 123
    assert structured_format(policy, None) is None
    with pytest.raises(ValueError, match="both"):
        StructuredOutputs(max_string_chars=10)
    with pytest.raises(ValueError, match="both"):
        LMSpec(model="vllm-server/smol", api_base="http://x/v1", max_array_items=3).structured_policy()
