"""Direct LM calls: DSPy's async call without its thread hops gives what DSPy's own path gives."""

from __future__ import annotations

import asyncio

import dspy
import pytest
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import LMRateLimitError
from dspy.utils.usage_tracker import track_usage

from eigendspy.lm import direct_calls
from eigendspy.lm.direct_calls import is_text_only
from eigendspy.lm.request_slots import SlottedLM
from eigendspy.testing import ScriptedLM
from eigendspy.testing.chat_app import ChatApp

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hi."}]
# calling an LM with messages= directly (not through an adapter) is deprecated in DSPy 3.4 on both paths alike
pytestmark = pytest.mark.filterwarnings("ignore:Passing OpenAI-style:DeprecationWarning")
VOLATILE = {"timestamp", "uuid", "response"}  # per call, or a fresh response object each time


@pytest.fixture
def hops(monkeypatch):
    """Counts the calls DSPy sends to a worker thread (``asyncio.to_thread``), still running them."""
    counted = []
    real = asyncio.to_thread

    async def counting(func, /, *args, **kwargs):
        counted.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    return counted


class _Recorder(BaseCallback):
    def __init__(self) -> None:
        self.events = []

    def on_lm_start(self, call_id, instance, inputs):
        self.events.append(("start", dict(inputs)))

    def on_lm_end(self, call_id, outputs, exception=None):
        self.events.append(("end", outputs, type(exception).__name__ if exception else None))


def _stock(lm, **kwargs):
    return dspy.BaseLM.acall(lm, **kwargs)  # DSPy's own acall, thread hops included


def _entry(lm):
    return {k: v for k, v in lm.history[-1].items() if k not in VOLATILE}


def test_the_fast_path_is_live_on_the_pinned_dspy():
    # if a DSPy release renames the steps, every call silently takes the stock path: this says so
    assert direct_calls.available
    lm = ScriptedLM(["x"])
    assert is_text_only(lm, None, MESSAGES, {})
    assert is_text_only(lm, "a prompt", None, {})
    assert not is_text_only(lm, None, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], {})
    assert not is_text_only(lm, None, MESSAGES, {"request": object()})


def test_a_text_call_makes_no_thread_hops_and_matches_dspys_own_call(hops):
    lm = ScriptedLM(lambda req: "hello there")
    recorder = _Recorder()
    lm.callbacks = [recorder]
    with track_usage() as direct_usage:
        direct = asyncio.run(lm.acall(messages=MESSAGES, temperature=0.3))
    direct_entry, direct_events = _entry(lm), list(recorder.events)
    assert hops == []
    recorder.events.clear()
    with track_usage() as stock_usage:
        stock = asyncio.run(_stock(lm, messages=MESSAGES, temperature=0.3))
    assert len(hops) >= 2  # DSPy's own path: preparation and pricing in worker threads
    assert direct == stock == ["hello there"]
    assert direct_entry == _entry(lm)
    assert direct_entry["kwargs"]["temperature"] == 0.3
    assert direct_usage.get_total_tokens() == stock_usage.get_total_tokens()
    assert direct_events == recorder.events
    assert [e[0] for e in direct_events] == ["start", "end"]
    assert direct_events[0][1]["messages"] == MESSAGES
    assert lm.call_count == 2


def test_a_retryable_error_is_retried_as_dspy_retries_it(hops):
    def flaky(req):
        if req.call_index == 0:
            raise LMRateLimitError("slow down", retry_after=0)
        return "after a retry"

    lm = ScriptedLM(flaky, num_retries=1)
    assert asyncio.run(lm.acall(messages=MESSAGES)) == ["after a retry"]
    assert lm.call_count == 2 and hops == []
    no_retries = ScriptedLM(flaky, num_retries=0)
    with pytest.raises(LMRateLimitError):
        asyncio.run(no_retries.acall(messages=MESSAGES))


def test_an_engine_error_surfaces_as_on_dspys_own_path():
    def broken(req):
        raise ValueError("the policy failed")

    lm = ScriptedLM(broken)
    recorder = _Recorder()
    lm.callbacks = [recorder]
    with pytest.raises(Exception) as direct:
        asyncio.run(lm.acall(messages=MESSAGES))
    with pytest.raises(Exception) as stock:
        asyncio.run(_stock(lm, messages=MESSAGES))
    assert type(direct.value) is type(stock.value)
    assert str(direct.value) == str(stock.value) and "the policy failed" in str(direct.value)
    assert [e[2] for e in recorder.events if e[0] == "end"] == [type(direct.value).__name__] * 2


def test_cached_calls_and_media_take_dspys_own_path(hops):
    lm = ScriptedLM(lambda req: f"answer {req.call_index}", cache=True)
    first = asyncio.run(lm.acall(messages=[{"role": "user", "content": "a question asked once here"}]))
    again = asyncio.run(lm.acall(messages=[{"role": "user", "content": "a question asked once here"}]))
    assert first == again == ["answer 0"] and lm.call_count == 1  # the second came from DSPy's cache
    assert hops  # the cache is read and written off the loop, as DSPy does
    hops.clear()
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert asyncio.run(ScriptedLM(["ok"]).acall(messages=parts)) == ["ok"]
    assert hops and hops[0] == "prepare"


def test_predict_through_the_adapter_takes_the_fast_path(hops):
    predict = dspy.Predict("question -> answer")
    predict.lm = ScriptedLM(lambda req: {"answer": req.inputs["question"].upper()})
    assert asyncio.run(predict.acall(question="why")).answer == "WHY"
    assert hops == []


def test_a_server_lm_prices_and_records_its_call_as_dspys_own_path(serve_app, hops):
    # a SlottedLM on DSPy's native OpenAI route: a real pricing provider, the wire response parsed by DSPy
    lm = SlottedLM("openai/m", api_base=serve_app(ChatApp("from the server")), api_key="k", cache=False,
                   num_retries=0)
    direct = asyncio.run(lm.acall(messages=MESSAGES))
    direct_entry = _entry(lm)
    assert "prepare" not in hops and "_price_result" not in hops
    stock = asyncio.run(_stock(lm, messages=MESSAGES))
    assert "_price_result" in hops
    assert direct == stock == ["from the server"]
    assert direct_entry == _entry(lm)
    assert direct_entry["usage"]["total_tokens"] == 2
