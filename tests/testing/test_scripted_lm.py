"""Tests for the scripted, engine-based ``dspy.LM`` (eigendspy.testing.lm).

Every test goes through real DSPy modules and adapters, so a DSPy upgrade that
changes the engine contract or the adapters' prompt format fails here first.
"""

from __future__ import annotations

import asyncio
import copy
import time

import dspy
import pydantic
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG
from dspy.utils.exceptions import AdapterParseError, LMUnexpectedError

from eigendspy.testing.lm import (
    ScriptedLM,
    ScriptedRequest,
    ScriptedToolCall,
    ScriptedToolCalls,
    ScriptExhaustedError,
    scripted_lm,
)


@pytest.fixture(autouse=True)
def isolated_dspy():
    """Fresh DSPy settings and no response cache, as DSPy's own tests do.

    The previous cache object is restored afterwards without touching ``dspy.cache``
    first, since reading it would lazily build the on-disk cache.
    """
    previous = vars(dspy).get("cache")
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
    yield
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
    with dspy._cache_lock:
        if previous is None:
            vars(dspy).pop("cache", None)
        else:
            dspy.cache = previous


class Item(pydantic.BaseModel):
    name: str
    qty: int


class Extract(dspy.Signature):
    """Extract the order from the customer message."""

    message: str = dspy.InputField()
    summary: str = dspy.OutputField()
    count: int = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    item: Item = dspy.OutputField()


ANSWER = {
    "summary": "two lamps\nurgent",
    "count": 2,
    "tags": ["lamp", "rush"],
    "item": Item(name="lamp", qty=2),
}


def search(query: str, k: int = 3) -> list[str]:
    """Search the catalog."""
    return []


def refund(order_id: str) -> str:
    """Refund an order."""
    return "ok"


class PickTools(dspy.Signature):
    """Call the tools needed to resolve the request."""

    request: str = dspy.InputField()
    tools: list[dspy.Tool] = dspy.InputField()
    next_thought: str = dspy.OutputField()
    tool_calls: dspy.ToolCalls = dspy.OutputField()


TOOLS = [dspy.Tool(search), dspy.Tool(refund)]
CALLS = ScriptedToolCalls(
    calls=[
        ScriptedToolCall(name="search", arguments={"query": "lamp", "k": 2}),
        {"name": "refund", "arguments": {}},
    ],
    outputs={"next_thought": "look it up"},
)


def expect_answer(pred: dspy.Prediction) -> None:
    assert pred.summary == "two lamps\nurgent"
    assert pred.count == 2
    assert pred.tags == ["lamp", "rush"]
    assert pred.item == Item(name="lamp", qty=2)


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
def test_predict_receives_policy_answer(adapter: dspy.Adapter):
    seen: list[ScriptedRequest] = []

    def policy(request: ScriptedRequest) -> dict:
        seen.append(request)
        return ANSWER

    lm = scripted_lm(policy)
    dspy.configure(lm=lm, adapter=adapter)
    expect_answer(dspy.Predict(Extract)(message="Two lamps,\nplease hurry"))

    (request,) = seen
    assert lm.call_count == 1 and lm.log.requests == seen
    assert request.output_fields == ["summary", "count", "tags", "item"]
    assert request.output_types["count"] == "int"
    assert request.inputs == {"message": "Two lamps,\nplease hurry"}
    assert request.adapter_format == ("json" if isinstance(adapter, dspy.JSONAdapter) else "chat")
    assert request.messages[0]["role"] == "system" and request.messages[-1]["role"] == "user"
    assert request.tools is None


def test_json_adapter_gets_json_schema_response_format():
    lm = scripted_lm([ANSWER])
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        expect_answer(dspy.Predict(Extract)(message="m"))
    fmt = lm.log.requests[0].response_format
    assert fmt["type"] == "json_schema"
    assert list(fmt["schema"]["properties"]) == ["summary", "count", "tags", "item"]


def test_json_object_mode_without_structured_outputs():
    lm = scripted_lm([ANSWER], structured_outputs=False)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        expect_answer(dspy.Predict(Extract)(message="m"))
    request = lm.log.requests[0]
    assert request.response_format is None and request.adapter_format == "json"


def test_policy_sees_signature_instructions():
    def policy(request: ScriptedRequest) -> dict:
        polite = "politely" in request.instructions
        return {**ANSWER, "summary": "please" if polite else "now"}

    lm = scripted_lm(policy)
    with dspy.context(lm=lm):
        assert dspy.Predict(Extract)(message="m").summary == "now"
        polite = Extract.with_instructions("Extract the order politely.\nKeep it short.")
        assert dspy.Predict(polite)(message="m").summary == "please"
    assert lm.log.requests[1].instructions == "Extract the order politely.\nKeep it short."
    assert lm.log.requests[0].instructions == "Extract the order from the customer message."


@pytest.mark.parametrize(
    "adapter",
    [dspy.JSONAdapter(), dspy.ChatAdapter(use_native_function_calling=True)],
    ids=["json-default", "chat-native"],
)
@pytest.mark.parametrize(
    "answer",
    [CALLS, {"next_thought": "look it up", "tool_calls": CALLS.model_copy(update={"outputs": {}})}],
    ids=["calls", "dict-with-calls"],
)
def test_native_tool_calls(adapter: dspy.Adapter, answer):
    lm = scripted_lm(lambda request: answer)
    with dspy.context(lm=lm, adapter=adapter):
        pred = dspy.Predict(PickTools)(request="refund my lamp", tools=TOOLS)

    calls = pred.tool_calls.tool_calls
    assert [(c.name, c.args) for c in calls] == [("search", {"query": "lamp", "k": 2}), ("refund", {})]
    assert all(c.id for c in calls)
    assert pred.next_thought == "look it up"
    request = lm.log.requests[0]
    assert request.tool_names == ["search", "refund"]
    assert request.tools[0]["function"]["parameters"]["properties"]["query"] == {"type": "string"}
    assert request.output_fields == ["next_thought"]  # DSPy removes natively handled fields from the prompt


def test_tool_calls_fall_back_to_text_when_not_native():
    """ChatAdapter's default (no native function calling) gets the same policy's calls as text."""
    lm = scripted_lm(
        lambda request: {
            "next_thought": "hm",
            "tool_calls": dspy.ToolCalls.from_dict_list([{"name": "search", "args": {"query": "lamp"}}]),
        }
    )
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        pred = dspy.Predict(PickTools)(request="r", tools=TOOLS)
    assert [(c.name, c.args) for c in pred.tool_calls.tool_calls] == [("search", {"query": "lamp"})]
    request = lm.log.requests[0]
    assert request.tools is None and request.tool_call_field == "tool_calls"


def test_malformed_text_raises_adapter_parse_error():
    lm = scripted_lm(lambda request: "I refuse to follow the format.")
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        with pytest.raises(AdapterParseError):
            dspy.Predict(Extract)(message="m")
    assert lm.call_count == 1
    # With DSPy's default JSON fallback the adapter asks twice, then gives up the same way.
    with dspy.context(lm=lm):
        with pytest.raises(AdapterParseError):
            dspy.Predict(Extract)(message="m")
    assert lm.call_count == 3
    assert lm.log.requests[2].adapter_format == "json"


def test_script_is_consumed_in_order_and_exhausts():
    lm = scripted_lm([{"answer": "one"}, lambda r: {"answer": r.inputs["question"].upper()}])
    with dspy.context(lm=lm):
        qa = dspy.Predict("question -> answer")
        assert qa(question="q").answer == "one"
        assert qa(question="q").answer == "Q"
        with pytest.raises(LMUnexpectedError) as info:  # DSPy wraps engine failures; the cause is ours
            qa(question="q")
    assert isinstance(info.value.__cause__, ScriptExhaustedError)


def test_direct_lm_call_returns_raw_text():
    lm = scripted_lm(lambda r: "plain text" if not r.output_fields else {"answer": "x"})
    assert lm("hello") == ["plain text"]
    assert lm.log.requests[0].last_user_message == "hello"
    with pytest.raises(TypeError):
        scripted_lm({"answer": "not a script"})


def test_identical_requests_reach_policy_without_cache():
    lm = scripted_lm(lambda r: {"answer": str(r.call_index)})
    with dspy.context(lm=lm):
        qa = dspy.Predict("question -> answer")
        assert [qa(question="same").answer for _ in range(3)] == ["0", "1", "2"]
    assert lm.call_count == 3


def test_copies_share_the_call_log():
    lm = scripted_lm(lambda r: {"answer": "a"})
    twin = lm.copy(temperature=0.5)
    assert isinstance(twin, ScriptedLM) and isinstance(lm, dspy.LM)
    with dspy.context(lm=twin):
        dspy.Predict("question -> answer")(question="q")
    assert lm.call_count == 1 and copy.deepcopy(lm).log is lm.log


async def test_async_calls_run_concurrently():
    lm = scripted_lm(lambda r: {**ANSWER, "summary": r.inputs["message"]}, latency_s=0.05)
    predict = dspy.Predict(Extract)
    with dspy.context(lm=lm):
        start = time.perf_counter()
        preds = await asyncio.gather(*(predict.acall(message=f"m{i}") for i in range(50)))
        elapsed = time.perf_counter() - start
    assert [p.summary for p in preds] == [f"m{i}" for i in range(50)]
    assert lm.call_count == 50
    assert sorted(r.call_index for r in lm.log.requests) == list(range(50))
    assert elapsed < 50 * 0.05 / 3, elapsed


async def test_async_policy_and_aforward():
    async def policy(request: ScriptedRequest) -> dict:
        await asyncio.sleep(0)
        return {"answer": "async"}

    lm = scripted_lm(policy)
    with dspy.context(lm=lm):
        assert (await dspy.Predict("question -> answer").aforward(question="q")).answer == "async"
        with pytest.raises(LMUnexpectedError, match="async policy"):
            dspy.Predict("question -> answer")(question="q")  # a coroutine policy cannot answer a sync call


def test_sync_latency_is_applied():
    lm = scripted_lm([{"answer": "a"}], latency_s=0.05)
    start = time.perf_counter()
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer")(question="q")
    assert time.perf_counter() - start >= 0.05


# --- fast paths of the request view and the answer rendering: same results as the plain code --------------

PROMPT = (
    "[[ ## policy ## ]]\nBe kind. [[ ## not_a_header ## ]] inline\n\n[[ ## dialogue ## ]]  \n"
    "user: hi [[ ## x ## ]]\n[[ ## tools ## ]] trailing text is no header\n[[ ## tools ## ]]\n\n\n"
    "[{\"a\": 1}]\n[[ ## bad name ## ]]\n[[ ## last ## ]]"
)


@pytest.mark.parametrize("text", [PROMPT, "", "[[ ## a ## ]]", "x[[ ## a ## ]]\n[[ ## b ## ]]\n", "[[ ## " * 3])
def test_header_scan_finds_what_the_multiline_regex_finds(text):
    from eigendspy.testing.request import _HEADER, _headers

    assert [(m.span(), m.group(1)) for m in _headers(text)] == [(m.span(), m.group(1))
                                                                 for m in _HEADER.finditer(text)]


@pytest.mark.parametrize("suffix", ["", "\n\nRespond with the corresponding output fields, starting with `x`.\n",
                                    "\n\nRespond with a JSON object in this order.", "\n\nRespond with x\n\nmore"])
def test_inputs_match_the_whole_message_substitution(suffix):
    from eigendspy.testing.request import _HEADER, _REQUIREMENT, _inputs

    user = PROMPT + suffix
    names = ["policy", "dialogue", "tools", "last"]
    plain = _REQUIREMENT.sub("", user)
    headers = [m for m in _HEADER.finditer(plain) if m.group(1) in names]
    ends = [m.start() for m in headers[1:]] + [len(plain)]
    expected = {h.group(1): plain[h.end():end].strip() for h, end in zip(headers, ends, strict=False)}
    assert _inputs(user, names) == expected and expected


@pytest.mark.parametrize(("value", "plain"), [
    ("a", True), (1, True), (True, True), (None, True), (2.5, True), (2.0, True),
    ([1, "x", {"a": [None, 2.0]}], True), ({"tool_calls": [{"name": "f", "args": {"x": "1", "n": 3}}]}, True),
    (float("inf"), False), (float("nan"), False), ((1, 2), False), ({1: 2}, False), ({"a": (1,)}, False),
    (b"x", False),
])
def test_plain_json_values_are_exactly_what_serialize_for_json_returns(value, plain):
    import json

    from dspy.adapters.utils import serialize_for_json

    from eigendspy.testing.json_values import is_plain_json

    assert is_plain_json(value) is plain
    if plain:  # what the fast path writes is what pydantic's round trip would have written
        assert json.dumps(serialize_for_json(value)) == json.dumps(value)


def test_views_of_repeated_calls_are_parsed_the_same():
    lm = scripted_lm(lambda req: {"answer": req.inputs["question"] + "!"})
    predict = dspy.Predict("question: str, context: list[str] -> answer: str")
    with dspy.context(lm=lm):
        assert predict(question="q1", context=["a", "b"]).answer == "q1!"
        assert predict(question="q2", context=["c"]).answer == "q2!"
    first, second = lm.log.requests
    assert first.input_fields == second.input_fields == ["question", "context"]
    assert first.output_fields == second.output_fields == ["answer"] and first.output_types == {"answer": "str"}
    assert first.instructions == second.instructions != "" and first.adapter_format == "chat"
    assert second.inputs["question"] == "q2" and second.inputs["context"] == '["c"]'
