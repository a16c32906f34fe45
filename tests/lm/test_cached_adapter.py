"""`CachedChatAdapter` / `CachedJSONAdapter`: the same prompts as DSPy's adapters, byte for byte.

Every eigendspy role signature is formatted with real domain policies and tool schemas by the stock
adapter and the cached one (demos present and absent, native function calling on and off, through the
whole adapter call), and must match. Then: the cache notices changed instructions, demos and tools,
stays bounded, and is what the engine uses by default (with a knob to turn it off).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import pickle
from typing import Any, Literal, Optional, get_origin

import dspy
import pydantic
import pytest
from dspy.utils.callback import BaseCallback

from eigendspy.agents.assistant import schema_tools
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.lm.cached_adapter import (
    CachedChatAdapter,
    CachedJSONAdapter,
    chat_adapter,
    default_adapter_scope,
    json_adapter,
    signature_key,
)
from eigendspy.signatures import (
    AssistantTurn,
    GenerateTask,
    JudgeNLAssertion,
    JudgeTask,
    JudgeTrajectory,
    MetaPlan,
    ReflectPlan,
    UserToolTurn,
    UserTurn,
)
from eigendspy.signatures.workflow import ProposeWorkflow
from eigendspy.testing import ScriptedLM
from eigendspy.testing.roles import scripted_roles

PAIRS = [(dspy.ChatAdapter, CachedChatAdapter), (dspy.JSONAdapter, CachedJSONAdapter)]
DIALOGUE = ("agent: Hi! How can I help you today?\nuser: I want to cancel order #W2378156, email "
            "yusuf.rossi7301@example.com.\nagent: [tool call find_user_id_by_email] {\"email\": \"yusuf.rossi7301@"
            "example.com\"}\n[tool result find_user_id_by_email] yusuf_rossi_9620")


def _react_signature(domain) -> type[dspy.Signature]:
    """The signature of `dspy.ReAct`'s step (tools listed in its instructions), as the explore generator uses."""
    return dspy.ReAct(GenerateTask, tools=schema_tools(domain.tool_schemas())[:4]).react.signature


SIGNATURES = [AssistantTurn, UserTurn, UserToolTurn, MetaPlan, GenerateTask, JudgeTask, JudgeTrajectory,
              ReflectPlan, JudgeNLAssertion, ProposeWorkflow]


def _input_value(name: str, annotation: Any, domain, side: str = "assistant") -> Any:
    """A realistic value for an input field: the domain's policy, tool schemas, a transcript, ..."""
    if annotation == list[dspy.Tool]:
        return schema_tools(domain.tool_schemas(side))
    if annotation is int:
        return 3
    if get_origin(annotation) is list:
        return ["get_order_details", "cancel_pending_order"]
    if name == "policy":
        return domain.policy
    if name == "tools":
        return json.dumps(domain.tool_schemas(), indent=1)
    if name in ("dialogue", "transcript", "conversation", "trajectory"):
        return DIALOGUE
    return f"The {name} for this call.\nSecond line with {{braces}} and [[ ## markers ## ]]."


def _output_value(annotation: Any) -> Any:
    """A demo value for an output field, or ``None`` for rich types (the demo is then incomplete)."""
    if annotation is str:
        return "Sure, I can help with that."
    if annotation is bool:
        return True
    if annotation == list[str]:
        return ["first reason", "second reason"]
    if annotation is dspy.ToolCalls:
        return dspy.ToolCalls.from_dict_list([{"name": "get_order_details", "args": {"order_id": "#W1"}}])
    return None


def _inputs(signature, domain) -> dict[str, Any]:
    side = "user" if signature is UserToolTurn and domain.name == "telecom" else "assistant"
    return {n: _input_value(n, f.annotation, domain, side) for n, f in signature.input_fields.items()}


def _demos(signature, domain) -> list[dspy.Example]:
    outputs = {n: _output_value(f.annotation) for n, f in signature.output_fields.items()}
    outputs = {n: v for n, v in outputs.items() if v is not None}
    first = next(iter(signature.output_fields))
    return [dspy.Example(**_inputs(signature, domain), **outputs),  # complete where the types allow
            dspy.Example(**{next(iter(signature.input_fields)): "only one input"},
                         **{first: outputs.get(first, "x")})]  # incomplete


@pytest.fixture(scope="module")
def domains(tau2_dir):
    return {"retail": get_domain("retail", data_dir=tau2_dir / "retail"),
            "airline": get_domain("airline", data_dir=tau2_dir / "airline"), "telecom": get_domain("telecom")}


@pytest.mark.parametrize(("stock_cls", "cached_cls"), PAIRS)
@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("with_demos", [False, True])
def test_every_role_signature_formats_identically(domains, stock_cls, cached_cls, native, with_demos):
    stock, cached = stock_cls(use_native_function_calling=native), cached_cls(use_native_function_calling=native)
    lm = ScriptedLM(lambda req: "", native_tools=True)
    checked = 0
    for domain in domains.values():
        for signature in [*SIGNATURES, _react_signature(domain)]:
            inputs, demos = _inputs(signature, domain), (_demos(signature, domain) if with_demos else [])
            for _ in range(2):  # the second round is served from the cache
                kw_s, kw_c = {}, {}
                sig_s = stock._call_preprocess(lm, kw_s, signature, inputs)
                sig_c = cached._call_preprocess(lm, kw_c, signature, inputs)
                assert kw_s == kw_c
                assert cached.format(sig_c, demos, inputs) == stock.format(sig_s, demos, inputs)
                checked += 1
    assert checked == 2 * 3 * (len(SIGNATURES) + 1)
    assert cached.cache_stats()["system"].hits > 0


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize(("stock_cls", "cached_cls"), PAIRS)
def test_whole_predict_call_sends_the_same_request(domains, stock_cls, cached_cls, native):
    """Through `dspy.Predict` and the adapter call: messages, native tools and response formats; an empty
    answer also drives ChatAdapter's JSON fallback, whose request must match too."""
    domain = domains["retail"]
    inputs = _inputs(AssistantTurn, domain)
    logs = []
    for cls in (stock_cls, cached_cls):
        lm, adapter = ScriptedLM(lambda req: "", native_tools=native), cls(use_native_function_calling=native)
        predict = dspy.Predict(AssistantTurn)
        predict.demos = _demos(AssistantTurn, domain)
        with dspy.context(lm=lm, adapter=adapter):
            for _ in range(2):
                with pytest.raises(dspy.utils.exceptions.AdapterParseError):
                    predict(**inputs)
        logs.append([(r.messages, r.tools, r.response_format, r.adapter_format) for r in lm.log.requests])
    assert logs[0] == logs[1]
    assert len(logs[0]) == (4 if stock_cls is dspy.ChatAdapter else 2)
    assert bool(logs[0][0][1]) is native


def test_fallback_adapter_is_cached_and_kept():
    adapter = CachedChatAdapter(use_native_function_calling=True)
    fallback = adapter._make_json_adapter_fallback()
    assert isinstance(fallback, CachedJSONAdapter) and fallback.use_native_function_calling
    assert adapter._make_json_adapter_fallback() is fallback
    adapter.use_native_function_calling = False
    assert adapter._make_json_adapter_fallback().use_native_function_calling is False


def test_changed_instructions_and_fields_invalidate(domains):
    """What optimizers do: a new signature with new instructions (GEPA, MIPROv2), instructions set in
    place, a field's description changed, a field retyped per call (small-model mode)."""
    stock, cached = dspy.ChatAdapter(), CachedChatAdapter()
    inputs = _inputs(AssistantTurn, domains["retail"])

    class Sig(dspy.Signature):
        """Original instructions."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField()

    def same(signature):
        msgs = cached.format(signature, [], {"question": "q"} if "question" in signature.input_fields else inputs)
        assert msgs == stock.format(signature, [], {"question": "q"} if "question" in signature.input_fields
                                    else inputs)
        return msgs[0]["content"]

    first = same(Sig)
    assert "Original instructions." in first
    rewritten = Sig.with_instructions("Rewritten by the optimizer.")
    assert "Rewritten by the optimizer." in same(rewritten)
    Sig.instructions = "Set in place."
    assert "Set in place." in same(Sig) and same(Sig) != first
    described = Sig.with_updated_fields("answer", desc="A better description")
    assert "A better description" in same(described)
    a = AssistantTurn.with_updated_fields("tool_calls", type_=Optional[Literal["a", "b"]])  # noqa: UP045
    b = AssistantTurn.with_updated_fields("tool_calls", type_=Optional[Literal["a", "c"]])  # noqa: UP045
    assert same(a) != same(b)  # a per-call retyped output (small-model mode) gets its own entry
    assert cached.cache_stats()["system"].misses == 6


def test_demos_changed_by_an_optimizer_show_up(domains):
    domain = domains["retail"]
    inputs = _inputs(AssistantTurn, domain)
    trainset = [dspy.Example(**inputs, tool_calls=_output_value(dspy.ToolCalls), response="").with_inputs(
        "policy", "dialogue", "tools")]
    program = dspy.Predict(AssistantTurn)
    compiled = dspy.LabeledFewShot(k=1).compile(program, trainset=trainset)
    stock, cached = dspy.ChatAdapter(), CachedChatAdapter()
    for predictor in (program, compiled, program):
        msgs = cached.format(predictor.signature, predictor.demos, inputs)
        assert msgs == stock.format(predictor.signature, predictor.demos, inputs)
        assert len(msgs) == 2 + 2 * len(predictor.demos)
    assert len(compiled.demos) == 1


def test_changed_tools_are_reformatted(domains):
    stock, cached = dspy.ChatAdapter(), CachedChatAdapter()
    tools = schema_tools(domains["retail"].tool_schemas())
    inputs = {"policy": "p", "dialogue": "d", "tools": tools}

    def user_message():
        msg = cached.format(AssistantTurn, [], inputs)
        assert msg == stock.format(AssistantTurn, [], inputs)
        return msg[-1]["content"]

    base = user_message()
    tools.append(schema_tools(domains["airline"].tool_schemas())[0])  # same list, one more tool
    grown = user_message()
    assert grown != base
    tools[0].desc = "A new description set in place."
    assert "A new description set in place." in user_message()
    inputs["tools"] = schema_tools(domains["airline"].tool_schemas())  # a new list
    assert "A new description" not in user_message()
    assert cached.cache_stats()["tools"].misses == 4


def test_caches_are_bounded():
    stock, cached = dspy.ChatAdapter(), CachedChatAdapter(cache_size=3)
    signatures = [dspy.Signature(f"question -> answer_{i}") for i in range(8)]
    for _ in range(2):
        for sig in signatures:
            assert cached.format(sig, [], {"question": "q"}) == stock.format(sig, [], {"question": "q"})
    stats = cached.cache_stats()["system"]
    assert stats.size == 3 and stats.maxsize == 3
    assert stats.misses == 16  # cycling 8 keys through 3 slots never hits
    tools = [schema_tools([{"function": {"name": f"t{i}", "parameters": {"properties": {}}}}]) for i in range(8)]
    for t in tools:
        cached.format(AssistantTurn, [], {"policy": "p", "dialogue": "d", "tools": t})
    assert cached.cache_stats()["tools"].size == 3
    cached.clear_cache()
    assert cached.cache_stats()["system"].size == 0


def test_adapters_copy_and_pickle_with_empty_caches():
    """DSPy settings and programs get deep-copied (and Ray pickles configs): the locks must not break that."""
    adapter = CachedJSONAdapter(cache_size=5)
    adapter.format(dspy.Signature("question -> answer"), [], {"question": "q"})
    for clone in (copy.deepcopy(adapter), pickle.loads(pickle.dumps(adapter))):
        assert isinstance(clone, CachedJSONAdapter) and clone.cache_stats()["system"].size == 0
        assert clone.cache_stats()["system"].maxsize == 5
        assert clone.format(dspy.Signature("question -> answer"), [], {"question": "q"}) == adapter.format(
            dspy.Signature("question -> answer"), [], {"question": "q"})
    assert adapter.cache_stats()["system"].size == 1


def test_unhashable_field_extras_skip_the_cache():
    sig = dspy.Signature("question -> answer").with_updated_fields("answer", desc="d")
    assert signature_key(sig) is not None
    sig.model_fields["answer"].json_schema_extra["unhashable"] = ["a", "list"]
    assert signature_key(sig) is None
    cached, stock = CachedChatAdapter(), dspy.ChatAdapter()
    assert cached.format(sig, [], {"question": "q"}) == stock.format(sig, [], {"question": "q"})
    assert cached.cache_stats()["system"].size == 0


def test_callbacks_fire_as_often_as_with_the_stock_adapter():
    class Count(BaseCallback):
        def __init__(self):
            self.starts = 0

        def on_adapter_format_start(self, call_id, instance, inputs):
            self.starts += 1

    counts = []
    for adapter_cls in (dspy.ChatAdapter, CachedChatAdapter, dspy.JSONAdapter, CachedJSONAdapter):
        callback = Count()
        adapter_cls(callbacks=[callback]).format(dspy.Signature("question -> answer"), [], {"question": "q"})
        counts.append(callback.starts)
    assert counts[0] == counts[1] >= 1 and counts[2] == counts[3] >= 1


def test_json_response_format_is_cached_and_equal():
    class Draft(pydantic.BaseModel):
        title: str
        steps: list[str]

    sig = dspy.Signature({"question": (str, dspy.InputField()), "draft": (Draft, dspy.OutputField())})
    lm = ScriptedLM(lambda req: "", structured_outputs=True)
    stock, cached = dspy.JSONAdapter(), CachedJSONAdapter()
    for _ in range(3):
        kw_s, kw_c = {}, {}
        stock._prepare_response_format(lm, kw_s, sig)
        cached._prepare_response_format(lm, kw_c, sig)
        assert kw_c["response_format"].model_json_schema() == kw_s["response_format"].model_json_schema()
    assert cached.cache_stats()["response_format"].hits == 2


def test_default_scope_respects_the_callers_adapter():
    adapter = chat_adapter()
    assert isinstance(adapter, CachedChatAdapter) and type(chat_adapter(False)) is dspy.ChatAdapter
    assert isinstance(json_adapter(), CachedJSONAdapter) and type(json_adapter(False)) is dspy.JSONAdapter
    with default_adapter_scope(adapter):
        assert dspy.settings.adapter is adapter
    chosen = dspy.JSONAdapter()
    with dspy.context(adapter=chosen), default_adapter_scope(adapter):
        assert dspy.settings.adapter is chosen
    with default_adapter_scope(None):
        assert dspy.settings.adapter is None


def _engine_requests(tmp_path, name: str, cached: bool, used: list[type] | None = None, json_mode: bool = False):
    """Run a small mock engine; every request each scripted role LM received (messages, response format)."""
    from eigendspy.testing import roles as scripted

    def spy(policy):
        def wrapped(req):
            if used is not None:
                used.append(type(dspy.settings.adapter))
            return policy(req)
        return wrapped

    roles = scripted_roles(assistant=spy(scripted.assistant), user=spy(scripted.user))
    cfg = EngineConfig(domain="mock", streams=1, rounds=1, tasks_per_round=2, cached_adapter=cached)
    domain = get_domain("mock", num_users=4, tasks_per_user=3)
    store = RunStore.create(tmp_path / name, RunManifest(config=cfg, seed=cfg.seed, domain="mock"))
    try:  # json_mode: what `synth` does for the embedded model (the adapter the caller set wins)
        with dspy.context(adapter=json_adapter(cached)) if json_mode else contextlib.nullcontext():
            asyncio.run(DataEngine(domain, roles, store, cfg).run())
    finally:
        store.close()
    return {role: sorted(json.dumps([r.messages, r.response_format]) for r in getattr(roles, role).turn.lm.log.requests)
            for role in ("assistant", "user")}


@pytest.mark.parametrize("cached", [True, False])
def test_engine_uses_the_cached_adapter_by_default(tmp_path, cached):
    """An engine run sends each role the same requests with and without the cache; the knob decides which
    adapter formats them."""
    used: list[type] = []
    requests = _engine_requests(tmp_path, "run", cached, used)
    assert set(used) == {CachedChatAdapter if cached else dspy.ChatAdapter}
    assert requests == _engine_requests(tmp_path, "other", not cached) and len(requests["assistant"]) >= 2
    assert EngineConfig().cached_adapter is True


def test_engine_under_the_json_adapter_sends_the_same_requests(tmp_path):
    used: list[type] = []
    requests = _engine_requests(tmp_path, "cached", True, used, json_mode=True)
    assert set(used) == {CachedJSONAdapter}
    stock = _engine_requests(tmp_path, "stock", False, json_mode=True)
    assert requests == stock
    assert all(json.loads(r)[1] is not None for r in requests["assistant"])  # structured outputs were asked for
