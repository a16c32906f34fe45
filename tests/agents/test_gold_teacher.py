"""The gold teacher acts only on what the dialogue conveyed, asks before writing, and says what it did."""

from __future__ import annotations

import dspy
import pytest

from eigendspy.agents import Assistant, GoldTeacher
from eigendspy.core.messages import Message
from eigendspy.core.orchestrator import GREETING, EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.participants import FunctionParticipant, TurnContext
from eigendspy.core.task import Action, EvaluationCriteria, RewardType, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.items import apply_modes
from eigendspy.scoring import Checker
from eigendspy.testing import scripted_roles

DOMAIN = get_domain("mock")


def _task(compare_args=None) -> Task:
    action = Action(action_id="a0", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"},
                    compare_args=compare_args)
    return Task(id="t", user_scenario=UserScenario(instructions="Mark task_1 as completed."),
                evaluation_criteria=EvaluationCriteria(actions=[action], communicate_info=["completed"],
                                                       reward_basis=[RewardType.DB, RewardType.COMMUNICATE]))


def _say(teacher, messages, task, step=1):
    ctx = TurnContext(role="assistant", task=task, domain=DOMAIN, step=step)
    return run_sync(teacher.respond([Message.assistant(GREETING), *messages], ctx))


def test_asks_until_the_user_conveys_the_values_then_asks_for_the_go_ahead_then_calls():
    teacher, task = GoldTeacher(), _task()
    first = _say(teacher, [Message.user("Hi, I need some help.")], task)
    assert not first.tool_calls and first.content.endswith("?")
    partial = _say(teacher, [Message.user("Please update task_1.")], task)
    assert partial.content == "Could you tell me the status?"
    told = [Message.user("Please mark task_1 as completed.")]
    ask = _say(teacher, told, task)
    assert "task_1" in ask.content and ask.content.endswith("Shall I go ahead?")
    call = _say(teacher, [*told, ask, Message.user("Yes, please go ahead.")], task, step=5)
    assert [(c.name, c.arguments) for c in call.tool_calls] == [("update_task_status", task.gold_actions[0].arguments)]


def test_acts_at_once_without_confirmation_and_only_on_compared_arguments():
    call = _say(GoldTeacher(confirm_writes=False), [Message.user("Mark task_1 as completed.")], _task())
    assert call.tool_calls[0].name == "update_task_status"
    nothing_to_convey = _say(GoldTeacher(confirm_writes=False), [Message.user("Hello.")], _task(compare_args=[]))
    assert nothing_to_convey.tool_calls


def test_an_episode_with_a_conveying_user_passes_the_checker_and_ends_with_a_confirmation():
    def user(messages, _ctx):
        if sum(m.role == "user" for m in messages) == 0:
            return "Please mark task_1 as completed."
        return "Thank you. ###STOP###" if messages[-1].content.startswith("All done") else "Yes, please go ahead."

    orch = Orchestrator(DOMAIN, GoldTeacher(), FunctionParticipant(user), config=EpisodeConfig(max_steps=20),
                        checker_factory=Checker.reward_factory(DOMAIN))
    episode = run_sync(orch.run(_task()))
    assert episode.reward == 1.0
    final = [m.content for m in episode.messages if m.role == "assistant" and m.content][-1]
    assert "completed" in final and "task_1" in final


def test_a_user_who_never_conveys_the_task_gets_questions_not_actions():
    vague = FunctionParticipant(lambda m, c: "Yes." if len(m) < 12 else "###STOP###")
    orch = Orchestrator(DOMAIN, GoldTeacher(), vague, config=EpisodeConfig(max_steps=30),
                        checker_factory=Checker.reward_factory(DOMAIN))
    episode = run_sync(orch.run(_task()))
    assert episode.reward == 0.0 and not any(m.tool_calls for m in episode.messages)


def test_the_engine_leaves_a_participant_assistant_alone_and_refuses_a_compiled_program_for_it(tmp_path):
    roles = scripted_roles()
    roles.assistant = GoldTeacher()
    apply_modes(roles, EngineConfig(small_model=True))
    assert roles.user.small_model and not hasattr(roles.assistant, "small_model")
    Assistant(lm=dspy.LM("openai/none")).save(str(tmp_path / "assistant.json"))
    with pytest.raises(ValueError, match="plain participants"):
        roles.load_compiled(tmp_path)


def test_makes_the_lookup_a_domain_rule_requires_before_the_write_even_if_gold_leaves_it_out():
    action = Action(action_id="a0", name="create_task", arguments={"user_id": "user_1", "title": "Hiring plan"})
    task = Task(id="c", user_scenario=UserScenario(instructions="x"), evaluation_criteria=EvaluationCriteria(
        actions=[action]))
    told = [Message.user('Please create a task "Hiring plan" for user_1.')]
    lookup = _say(GoldTeacher(), told, task)
    assert [(c.name, c.arguments) for c in lookup.tool_calls] == [("get_users", {})]
    result = Message(role="tool", id=lookup.tool_calls[0].id, content="[...]")
    assert _say(GoldTeacher(), [*told, lookup, result], task).content.endswith("Shall I go ahead?")
