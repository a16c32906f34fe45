"""Role LM calls that cannot poison or hang: endpoint-keyed cache, no replay of unparsable answers, timeouts.

Every server here is a local OpenAI chat-completions double on 127.0.0.1 reached over real HTTP by
the real DSPy engine, so the tests exercise DSPy's own cache and transport, not a mock of them.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterator
from typing import Any

import dspy
import pytest

from eigendspy.lm.cache import EndpointKeyedCache, install_endpoint_cache
from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms
from eigendspy.lm.resilience import CallFailedError, call_with_retries
from eigendspy.testing.chat_app import ChatApp
from eigendspy.testing.hung_server import hung_server as serve_hung


def answer(text: str) -> str:
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


def role_lm(api_base: str, **spec: Any) -> dspy.LM:
    config = RoleLMConfig(roles={"assistant": LMSpec(model="vllm-server/m", api_base=api_base, temperature=0.0,
                                                     num_retries=0, **spec)})
    return build_role_lms(config, local_factory=lambda: None)["assistant"]


def ask(lm: dspy.LM) -> str:
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        return predict(question="which server?").answer


def test_a_cached_answer_is_not_replayed_against_another_endpoint(fresh_cache, serve_app):
    a, b = ChatApp(answer("from A")), ChatApp(answer("from B"))
    lm_a, lm_b = role_lm(serve_app(a)), role_lm(serve_app(b))
    assert ask(lm_a) == "from A"
    assert ask(lm_b) == "from B" and b.calls == 1  # DSPy alone answers "from A" from the cache here
    assert ask(lm_a) == "from A" and a.calls == 1  # the cache still works per endpoint
    assert isinstance(dspy.cache, EndpointKeyedCache)


def test_install_keeps_the_existing_entries_store(fresh_cache):
    store = dspy.cache.memory_cache
    keyed = install_endpoint_cache()
    assert keyed is dspy.cache and keyed.memory_cache is store and install_endpoint_cache() is keyed
    request = {"model": "m", "messages": [], "api_base": "http://a", "api_key": "k", "timeout": 5}
    assert keyed.cache_key(request, ["api_key", "api_base"]) != keyed.cache_key({**request, "api_base": "http://b"})
    assert keyed.cache_key(request) == keyed.cache_key({**request, "api_key": "other", "timeout": 9})


def test_an_unparsable_answer_is_asked_again_on_retry(fresh_cache, serve_app):
    app = ChatApp("this is not in the adapter's format", answer("ok"))
    lm = role_lm(serve_app(app))

    async def attempt() -> str:
        return ask(lm)

    assert asyncio.run(call_with_retries(attempt, role="assistant", attempts=2, base_delay=0)) == "ok"
    assert app.calls == 2  # DSPy alone replays the cached bad answer and the retry fails the same way
    assert ask(lm) == "ok" and app.calls == 2  # the good answer is cached


def test_a_failed_parse_leaves_nothing_cached(fresh_cache, serve_app):
    app = ChatApp("garbage")
    lm = role_lm(serve_app(app))

    async def attempt() -> str:
        return ask(lm)

    with pytest.raises(CallFailedError, match="AdapterParseError"):
        asyncio.run(call_with_retries(attempt, role="assistant", attempts=1, base_delay=0))
    assert len(dspy.cache.memory_cache) == 0


def test_vllm_server_needs_no_api_key(fresh_cache, serve_app, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    app = ChatApp(answer("hi"))
    assert ask(role_lm(serve_app(app))) == "hi"
    assert app.authorization == "Bearer EMPTY"


def test_every_remote_role_lm_has_a_timeout():
    lms = build_role_lms(RoleLMConfig.from_mapping({"default": "openai/gpt-4o-mini", "roles": {
        "user": {"model": "vllm-server/m", "api_base": "http://127.0.0.1:9/v1", "timeout_s": 5,
                 "connect_timeout_s": 2}}}), local_factory=lambda: None)
    assert lms["planner"].kwargs["timeout"] == 60.0
    timeout = lms["user"].kwargs["timeout"]
    assert (timeout.read, timeout.connect) == (5, 2)
    with pytest.raises(ValueError):
        LMSpec(model="openai/x", timeout_s=0)


@pytest.fixture
def hung_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    with serve_hung() as url:
        yield url


def test_a_hung_server_stops_the_call_within_the_timeout(fresh_cache, hung_server):
    lm = role_lm(hung_server, timeout_s=1)
    start = time.monotonic()
    with pytest.raises(dspy.LMError, match="read timed out"):  # a timeout, said as such
        ask(lm)
    assert time.monotonic() - start < 4  # DSPy's default waits up to 600 s


def test_a_hung_server_stops_an_api_participant_within_its_timeout(hung_server):
    from eigendspy.core.messages import Message
    from eigendspy.core.participants import InfrastructureError, TurnContext
    from eigendspy.core.task import Task
    from eigendspy.domains import get_domain
    from eigendspy.lm.chat_api import ChatAPIParticipant

    domain = get_domain("mock")
    task = Task.model_validate({"id": "t1", "user_scenario": {"instructions": "Say hi."}})
    ctx = TurnContext(role="assistant", task=task, domain=domain, tools=domain.tool_schemas("assistant"))
    agent = ChatAPIParticipant("openai/m", api_base=hung_server, num_retries=0, timeout=1,
                               completion_kwargs={"api_key": "x", "max_retries": 0})
    importlib.import_module("litellm")  # respond imports it lazily; its import time is not the call's

    start = time.monotonic()
    with pytest.raises(InfrastructureError, match="Timeout"):
        asyncio.run(agent.respond([Message.user("hi")], ctx))
    assert time.monotonic() - start < 4  # LiteLLM's default waits up to 600 s
