"""Episodes and engine items retain no DSPy trace or LM history, unless asked; an optimizer's trace is kept."""

from __future__ import annotations

import asyncio
import gc

import dspy
import pytest
from dspy.clients.base_lm import GLOBAL_HISTORY

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.core.messages import TerminationReason
from eigendspy.core.task import EvaluationCriteria, StructuredUserInstructions, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.eval.runner import run_episodes
from eigendspy.lm.bounded_state import (
    DiscardingTrace,
    bounded_lm_state,
    caller_trace,
    keep_lm_state,
    role_turn_state,
)
from eigendspy.testing import roles as scripted_policies
from eigendspy.testing.lm import scripted_lm
from eigendspy.testing.roles import scripted_roles


@pytest.fixture
def restore_dspy_state():
    """Tests that keep DSPy's process-wide trace/history put them back as they were."""
    trace, history = dspy.settings.trace, len(GLOBAL_HISTORY)
    trace_len = len(trace) if trace is not None else 0
    yield
    if trace is not None:
        del trace[trace_len:]
    del GLOBAL_HISTORY[history:]


def mark_task(tid: str) -> Task:
    instructions = StructuredUserInstructions(domain="mock", reason_for_call=f"You want {tid} marked completed.",
                                              known_info="", task_instructions="")
    return Task(id=f"mark_{tid}", user_scenario=UserScenario(instructions=instructions),
                evaluation_criteria=EvaluationCriteria())


class Episodes:
    """The DSPy assistant and user on scripted LMs, reused batch after batch like a long run."""

    def __init__(self) -> None:
        self.domain = get_domain("mock", num_users=2, tasks_per_user=2)
        self.tasks = [mark_task(f"task_{i}") for i in (1, 2, 3, 4)]
        self.lms = [scripted_lm(scripted_policies.assistant), scripted_lm(scripted_policies.user)]
        self.assistant, self.user = Assistant(lm=self.lms[0]), UserSimulator(lm=self.lms[1])

    def batch(self, **kwargs) -> None:
        episodes = run_episodes(self.domain, self.tasks, self.assistant, self.user, progress=False, **kwargs)
        assert [e.termination_reason for e in episodes] == [TerminationReason.USER_STOP] * len(self.tasks)

    def retained(self) -> dict[str, int]:
        modules = [m for role in (self.assistant, self.user) for _, m in role.named_sub_modules()]
        return {
            "trace": len(dspy.settings.trace or []),
            "global_history": len(GLOBAL_HISTORY),
            "lm_history": sum(len(lm.history) for lm in self.lms),
            "module_history": sum(len(m.history) for m in modules),
            "predictions": sum(1 for o in gc.get_objects() if isinstance(o, dspy.Prediction)),
        }

    @property
    def calls(self) -> int:
        return sum(lm.call_count for lm in self.lms)


def test_three_batches_of_episodes_retain_no_predictions_or_history():
    run = Episodes()
    gc.collect()
    before = run.retained()
    after = []
    for _ in range(3):
        run.batch()
        gc.collect()
        after.append(run.retained())
    assert run.calls >= 3 * 2 * len(run.tasks)  # every episode made LM calls
    for counts in after:
        assert (counts["trace"], counts["global_history"]) == (before["trace"], before["global_history"])
        assert counts["lm_history"] == counts["module_history"] == 0
    assert after[2]["predictions"] <= after[0]["predictions"]  # nothing accumulates batch over batch


def test_keep_lm_history_keeps_trace_and_history_for_every_call(restore_dspy_state):
    run = Episodes()
    before = run.retained()
    run.batch(keep_lm_history=True)
    counts = run.retained()
    assert counts["trace"] - before["trace"] == run.calls  # one Predict call per LM call
    assert counts["global_history"] - before["global_history"] == run.calls
    assert counts["lm_history"] == run.calls


def test_an_optimizers_trace_is_kept_inside_episodes():
    run = Episodes()
    with dspy.context(trace=[]):
        assert caller_trace()
        run.batch()  # no keep asked: the caller's own trace list is what an optimizer reads back
        trace = dspy.settings.trace
    assert len(trace) == run.calls
    assert {id(p) for p, _, _ in trace} == {id(run.assistant.turn), id(run.user.turn)}
    assert run.retained()["lm_history"] == 0  # history stays off: only the trace was asked for


def test_bootstrap_few_shot_still_gets_demos_from_bounded_calls():
    lm = scripted_lm(lambda req: {"answer": req.inputs["question"].upper()})

    class Upper(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.answer = dspy.Predict("question -> answer")
            self.answer.set_lm(lm)

        def forward(self, question: str) -> dspy.Prediction:
            with bounded_lm_state():  # what every role call in an episode runs under
                return self.answer(question=question)

    train = [dspy.Example(question=q, answer=q.upper()).with_inputs("question") for q in ("ab", "cd", "ef")]
    compiled = dspy.BootstrapFewShot(metric=lambda g, p, trace=None: g.answer == p.answer,
                                     max_bootstrapped_demos=2, max_labeled_demos=0).compile(Upper(), trainset=train)
    assert [d.answer for d in compiled.answer.demos] == ["AB", "CD"]


def test_blocks_nest_and_keep_markers_reach_inner_blocks(restore_dspy_state):
    lm = scripted_lm(lambda req: {"answer": "x"})
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        n_trace = len(dspy.settings.trace)
        with bounded_lm_state():
            assert isinstance(dspy.settings.trace, DiscardingTrace) and dspy.settings.disable_history
            predict(question="q")
            with bounded_lm_state():  # nested: still off
                predict(question="q")
        assert len(dspy.settings.trace) == n_trace and lm.history == []
        with keep_lm_state(trace=False, history=True), bounded_lm_state():
            predict(question="q")
        assert len(dspy.settings.trace) == n_trace and len(lm.history) == 1
        with keep_lm_state(), bounded_lm_state():
            predict(question="q")
        assert len(dspy.settings.trace) == n_trace + 1 and len(lm.history) == 2


def test_discarding_trace_survives_modules_that_copy_and_extend_it():
    trace = DiscardingTrace()
    trace.append(1)
    trace.extend([2, 3])
    trace += [4]
    trace.insert(0, 5)
    assert trace == [] and trace.copy() == []


def test_engine_items_retain_no_trace_or_history_unless_configured(tmp_path, restore_dspy_state):
    domain = get_domain("mock", num_users=8, tasks_per_user=5)

    def run(keep: bool) -> int:
        cfg = EngineConfig(domain="mock", streams=1, rounds=1, tasks_per_round=2, episodes_per_task=1,
                           keep_lm_history=keep)
        store = RunStore.create(tmp_path / f"keep_{keep}", RunManifest(config=cfg, seed=cfg.seed, domain="mock"))
        try:
            result = asyncio.run(DataEngine(domain, scripted_roles(), store, cfg).run())
        finally:
            store.close()
        assert result.accepted_dialogues >= 1
        return sum(store.summary().usage.calls.values())

    before = (len(dspy.settings.trace), len(GLOBAL_HISTORY))
    assert run(keep=False) > 0
    assert (len(dspy.settings.trace), len(GLOBAL_HISTORY)) == before
    calls = run(keep=True)
    assert len(GLOBAL_HISTORY) - before[1] >= calls > 0


def test_role_turn_state_is_bounded_state_plus_default_adapter_and_no_input_type_check(restore_dspy_state):
    adapter, chosen = dspy.ChatAdapter(), dspy.JSONAdapter()
    assert dspy.settings.warn_on_type_mismatch
    with role_turn_state(adapter):
        assert isinstance(dspy.settings.trace, DiscardingTrace) and dspy.settings.disable_history
        assert dspy.settings.adapter is adapter and dspy.settings.warn_on_type_mismatch is False
    assert dspy.settings.adapter is None and dspy.settings.warn_on_type_mismatch
    with dspy.context(adapter=chosen), role_turn_state(adapter):
        assert dspy.settings.adapter is chosen  # the caller's adapter wins
    with dspy.context(trace=[]), keep_lm_state(trace=False, history=True), role_turn_state(None):
        assert caller_trace() and not dspy.settings.disable_history and dspy.settings.adapter is None


def test_role_turns_skip_dspys_per_call_input_type_check_other_calls_keep_it(monkeypatch):
    import dspy.predict.predict as predict_module

    checked: list[object] = []
    real = predict_module._is_value_compatible_with_type
    monkeypatch.setattr(predict_module, "_is_value_compatible_with_type",
                        lambda value, expected: checked.append(expected) or real(value, expected))
    run = Episodes()
    run.batch()
    assert run.calls > 0 and checked == []  # the roles' own inputs: strings and the tools they built
    dspy.Predict("question: str -> answer")(question="q", lm=scripted_lm(lambda req: {"answer": "a"}))
    assert checked == [str]
