"""Role metrics: Prediction(score, feedback) with the checker's/validator's reason for a planted
failure, and 1.0 for a correct item (mock domain, scripted and oracle partners)."""

from __future__ import annotations

import random

import dspy
import pytest

from eigendspy.agents import Assistant, TaskGenerator, TrajectoryValidator, UserSimulator
from eigendspy.agents.task_generator import draft_to_task
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.domains.mock import generate_db
from eigendspy.engine.entities import sample_entities
from eigendspy.optimizers.metrics import (
    AssistantEpisode,
    TaskGeneration,
    UserEpisode,
    as_bool_metric,
    assistant_metric,
    blank_feedback,
    planted_trajectory_items,
    task_generator_metric,
    user_simulator_metric,
    validate_metric,
    validator_calibration_metric,
)
from eigendspy.signatures.task_generator import ActionDraft, TaskDraft
from eigendspy.testing import roles as sr
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls, scripted_lm


@pytest.fixture(scope="module")
def mock():
    return get_domain("mock", num_users=8, tasks_per_user=5)


def mark_done(domain, task_id: str, tid: str = "t_mark") -> Task:
    draft = TaskDraft(
        persona="a busy team member", reason_for_call=f"You finished {task_id} and want it marked done.",
        known_info=f"The task id is {task_id}.",
        task_instructions=f"Ask the agent to mark {task_id} as completed. Stop once it confirms.",
        actions=[ActionDraft(name="update_task_status", arguments={"task_id": task_id, "status": "completed"})],
        communicate_info=["completed"], reward_basis=["DB", "COMMUNICATE"])
    return draft_to_task(draft, domain, tid)


@pytest.fixture(scope="module")
def task(mock) -> Task:
    pending = [t for t in generate_db(0, num_users=8, tasks_per_user=5).tasks.values() if t.status == "pending"]
    return mark_done(mock, pending[0].task_id)


def example(task: Task) -> dspy.Example:
    return dspy.Example(task=task).with_inputs("task")


def scripted_user() -> UserSimulator:
    return UserSimulator(lm=scripted_lm(sr.user))


# --- protocol ---------------------------------------------------------------------------------------------


def test_validate_metric_explains_the_five_argument_protocol():
    with pytest.raises(TypeError, match=r"pred_name=None, pred_trace=None.*lambda gold, pred"):
        validate_metric(lambda gold, pred: 1.0)
    with pytest.raises(TypeError, match="callable"):
        validate_metric("metric")
    ok = validate_metric(lambda gold, pred, trace=None, pred_name=None, pred_trace=None: 1.0)
    assert ok(None, None) == 1.0


def test_bool_view_is_needed_because_a_zero_prediction_is_truthy():
    zero = lambda g, p, t=None, pred_name=None, pred_trace=None: dspy.Prediction(score=0.0, feedback="no")  # noqa: E731
    half = lambda g, p, t=None, pred_name=None, pred_trace=None: dspy.Prediction(score=0.5, feedback="hm")  # noqa: E731
    assert bool(zero(None, None))  # the DSPy pitfall this wrapper exists for
    assert as_bool_metric(zero)(None, None) is False
    assert as_bool_metric(half)(None, None) is False and as_bool_metric(half, threshold=0.5)(None, None) is True
    blank = blank_feedback(half)(None, None)
    assert blank.score == 0.5 and blank.feedback == ""


# --- assistant ---------------------------------------------------------------------------------------------


def test_assistant_metric_passes_a_correct_episode(mock, task):
    program = AssistantEpisode(mock, Assistant(lm=scripted_lm(sr.assistant)), user=scripted_user())
    pred = program(task=task)
    result = assistant_metric(mock)(example(task), pred)
    assert pred.check.passed and result.score == 1.0 and "passed every check" in result.feedback


def test_assistant_metric_feeds_back_the_checker_reasons(mock, task):
    def wrong_status(req):  # sets the task back to "pending" and never says "completed"
        if "[tool result" not in req.inputs["dialogue"]:
            target = task.gold_actions[0].arguments["task_id"]
            call = ScriptedToolCall(name="update_task_status", arguments={"task_id": target, "status": "pending"})
            return ScriptedToolCalls(calls=[call], outputs={"response": ""})
        return {"response": "Done, all set.", "tool_calls": []}

    program = AssistantEpisode(mock, Assistant(lm=scripted_lm(wrong_status)), user=scripted_user())
    pred = program(task=task)
    result = assistant_metric(mock)(example(task), pred, None, "assistant.turn", None)
    assert result.score == 0.0
    assert "the final database does not match the expected one" in result.feedback
    assert "never told the user 'completed'" in result.feedback and "assistant.turn" in result.feedback
    from_episode = assistant_metric(mock)(example(task), dspy.Prediction(episode=pred.episode))  # no check attached
    assert from_episode.score == 0.0 and "never told the user 'completed'" in from_episode.feedback


def test_programs_share_the_domain_and_partner_across_optimizer_copies(mock):
    program = AssistantEpisode(mock, Assistant(), user=scripted_user())
    clone = program.deepcopy()
    assert clone._frozen is program._frozen and clone.assistant is not program.assistant
    assert [n for n, _ in clone.named_predictors()] == ["assistant.turn"]  # the frozen user is not optimized
    assert program.evolved_role[0] == "assistant"


# --- user simulator ----------------------------------------------------------------------------------------


def test_user_metric_passes_a_faithful_user(mock, task):
    pred = UserEpisode(mock, scripted_user())(task=task)
    result = user_simulator_metric(mock)(example(task), pred)
    assert result.score == 1.0, result.feedback


def test_user_metric_blames_an_early_stop_and_an_invented_value(mock, task):
    quitter = UserEpisode(mock, UserSimulator(lm=scripted_lm(lambda req: {"message": "Never mind. ###STOP###"})))
    result = user_simulator_metric(mock)(example(task), quitter(task=task))
    assert result.score == 0.0
    assert "user to blame (premature_stop)" in result.feedback and "before the assistant performed" in result.feedback
    assert "checker: the final database does not match" in result.feedback

    target = task.gold_actions[0].arguments["task_id"]

    def inventor(req):
        if "completed" in req.inputs["dialogue"].split("agent:")[-1]:
            return {"message": "Thanks! ###STOP###"}
        return {"message": f"My account is ACC-77123; please mark {target} as completed."}

    pred = UserEpisode(mock, UserSimulator(lm=scripted_lm(inventor)))(task=task)
    assert pred.check.passed  # the checker alone would accept this dialogue
    result = user_simulator_metric(mock)(example(task), pred)
    assert result.score == 0.0 and "ACC-77123" in result.feedback and "invented_values" in result.feedback
    as_assistant = user_simulator_metric(mock)(example(task), pred, None, "assistant.turn", None)
    assert as_assistant.feedback.startswith("The assistant (predictor assistant.turn)")


# --- task generator ----------------------------------------------------------------------------------------


def generation_example(mock, seed: int = 0, **extra) -> dspy.Example:
    entities = sample_entities(mock, random.Random(seed))
    return dspy.Example(plan="complete a pending task", entities=entities, task_id=f"gen_{seed}", **extra) \
        .with_inputs("plan", "entities", "task_id")


def test_task_generator_metric_accepts_an_executable_new_task(mock):
    ex = generation_example(mock)
    pred = TaskGeneration(mock, TaskGenerator(lm=scripted_lm(sr.generator)))(**ex.inputs())
    result = task_generator_metric(mock)(ex, pred)
    assert pred.task is not None and result.score == 1.0, result.feedback


def test_task_generator_metric_feeds_back_execution_and_duplicate_reasons(mock):
    ex = generation_example(mock)
    program = TaskGeneration(mock, TaskGenerator(lm=scripted_lm(sr.generator)))
    good = program(**ex.inputs())
    dup = task_generator_metric(mock, earlier_tasks=[good.task])(ex, good)
    assert dup.score == 0.0 and "near-duplicate of task gen_0" in dup.feedback
    per_example = task_generator_metric(mock)(generation_example(mock, earlier_tasks=[good.task]), good)
    assert per_example.score == 0.0 and "near-duplicate" in per_example.feedback

    done = next(t.task_id for t in generate_db(0, num_users=8, tasks_per_user=5).tasks.values()
                if t.status == "completed")

    def no_op(req):  # "completes" a task that is already completed
        draft = sr.generator(req)
        draft["task"]["actions"] = [{"name": "update_task_status", "arguments": {"task_id": done,
                                                                                 "status": "completed"}}]
        return draft

    result = task_generator_metric(mock)(ex, TaskGeneration(mock, TaskGenerator(lm=scripted_lm(no_op)))(
        **ex.inputs()))
    assert result.score == 0.0 and "changes nothing" in result.feedback

    def unknown_tool(req):
        draft = sr.generator(req)
        draft["task"]["actions"] = [{"name": "delete_task", "arguments": {"task_id": done}}]
        return draft

    pred = TaskGeneration(mock, TaskGenerator(lm=scripted_lm(unknown_tool)))(**ex.inputs())
    result = task_generator_metric(mock)(ex, pred)
    assert pred.task is None and result.score == 0.0 and "unknown tool 'delete_task'" in result.feedback


# --- validators --------------------------------------------------------------------------------------------


def test_validator_calibration_against_executable_ground_truth(mock, task):
    items = planted_trajectory_items(mock, [task])
    assert [i.expected_passed for i in items] == [True, False]
    metric = validator_calibration_metric()

    lenient = TrajectoryValidator(lm=scripted_lm(lambda req: {"passed": True, "blame": "none", "reasons": []}))
    scores = [metric(i, lenient(**i.inputs())) for i in items]
    assert scores[0].score == 1.0 and scores[1].score == 0.0
    assert "accepted an item that executable ground truth rejects" in scores[1].feedback
    assert "the final database does not match" in scores[1].feedback

    def strict(req):
        return {"passed": False, "blame": "user", "reasons": ["looks wrong"]}

    scores = [metric(i, TrajectoryValidator(lm=scripted_lm(strict))(**i.inputs())) for i in items]
    assert scores[0].score == 0.0 and "rejected an item that passes every executable check" in scores[0].feedback
    assert scores[1].score == 0.5 and "wrong blame" in scores[1].feedback

    def calibrated(req):
        ok = "all checks passed" in req.inputs["checker_feedback"]
        return {"passed": ok, "blame": "none" if ok else "assistant", "reasons": []}

    items = planted_trajectory_items(mock, [task], with_checker_feedback=True)
    judge = TrajectoryValidator(lm=scripted_lm(calibrated))
    assert [metric(i, judge(**i.inputs())).score for i in items] == [1.0, 1.0]
