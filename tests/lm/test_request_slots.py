"""Request slots: the engine's concurrency limit counts LM requests in flight, not whole role calls."""

from __future__ import annotations

import asyncio

import dspy
import pytest

from eigendspy.core.records import Usage
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.items import ItemWorker
from eigendspy.lm.request_slots import RequestSlots, SlotLimited, limits_requests, request_slots
from eigendspy.testing import ScriptedLM, scripted_roles


class _Gauge:
    """Counts answers being computed at once (the scripted model's view of requests in flight)."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    async def answer(self, req):
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.01)
        self.now -= 1
        return {"answer": "ok"}


def test_slots_bound_the_requests_in_flight_inside_a_scope_and_nothing_outside():
    gauge = _Gauge()
    predict = dspy.Predict("question -> answer")
    predict.lm = ScriptedLM(gauge.answer)

    async def many(slots):
        with request_slots(slots):
            await asyncio.gather(*(predict.acall(question=f"q{i}") for i in range(8)))

    asyncio.run(many(RequestSlots(2)))
    assert gauge.peak == 2
    gauge.peak = 0
    asyncio.run(many(None))
    assert gauge.peak == 8


def test_a_slot_is_given_back_when_the_check_on_acquire_refuses():
    def refuse():
        raise RuntimeError("breaker open")

    async def run():
        slots = RequestSlots(1, on_acquire=refuse)
        with pytest.raises(RuntimeError, match="breaker open"):
            async with slots:
                pass
        assert not slots._semaphore.locked()

    asyncio.run(run())


def test_limits_requests_only_when_every_lm_takes_slots_itself():
    class Plain(dspy.LM):
        pass

    with dspy.context(lm=ScriptedLM(lambda r: {})):
        assert limits_requests([ScriptedLM(lambda r: {}), None])
    assert not limits_requests([ScriptedLM(lambda r: {}), Plain("openai/x")])
    assert isinstance(ScriptedLM(lambda r: {}), SlotLimited)
    with dspy.context(lm=Plain("openai/x")):
        assert not limits_requests([None])


def _worker(concurrency: int, roles=None) -> ItemWorker:
    return ItemWorker(get_domain("mock"), roles or scripted_roles(), EngineConfig(concurrency=concurrency))


def test_item_worker_holds_a_slot_only_during_the_request_when_it_can():
    """Call 1's LM request waits until call 2 has done its non-LM work: with one slot held around whole calls
    that deadlocks (call 2 would need the slot call 1 holds); with slots inside requests it completes."""

    async def run(worker: ItemWorker) -> list[str]:
        order: list[str] = []
        other_side_done = asyncio.Event()

        async def waiting_answer(req):
            await other_side_done.wait()
            order.append("request 1 answered")
            return {"answer": "one"}

        predict = dspy.Predict("question -> answer")
        predict.lm = ScriptedLM(waiting_answer)

        async def first():
            return await predict.acall(question="first")

        async def second():
            order.append("call 2 non-LM work")  # e.g. an execution check before the call's own request
            other_side_done.set()
            return "two"

        usage = Usage()  # a deadlock detector, not a speed bound: the completing order needs no waiting at all
        await asyncio.wait_for(asyncio.gather(worker.call("generator", first, usage),
                                              worker.call("task_validator", second, usage)), timeout=2)
        return order

    worker = _worker(1)
    assert worker.slot_per_request
    assert asyncio.run(run(worker)) == ["call 2 non-LM work", "request 1 answered"]

    whole = _worker(1)
    whole.slot_per_request = False  # what a role LM that does not take slots itself gets
    with pytest.raises(TimeoutError):
        asyncio.run(run(whole))


def test_role_lms_built_from_a_config_take_request_slots_so_the_engine_limits_requests_only():
    from eigendspy.engine.config import Roles
    from eigendspy.lm.config import RoleLMConfig, build_role_lms

    config = RoleLMConfig.from_mapping({"default": "openai/gpt-4o-mini",
                                        "roles": {"assistant": {"model": "vllm-server/smol",
                                                                "api_base": "http://localhost:1/v1"}}})
    lms = build_role_lms(config)
    assert limits_requests(lms.values())
    worker = _worker(4, Roles.from_lms(lms))
    assert worker.slot_per_request
