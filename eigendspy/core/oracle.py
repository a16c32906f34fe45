"""Oracle participants and trajectory builders: the reference solution, played out.

`OracleAssistant` performs a task's gold actions (its own side) and finally states every
``communicate_info`` string; `OracleUser` performs the user-side gold actions, hands back and
says ``###STOP###`` at the end. Run through the orchestrator they reproduce the trajectory
tau2 scores as "gold" — the end-to-end test that the runtime and checker agree with tau2, and
the offline oracle that validates synthesized tasks by execution.

`build_trajectory` makes the same kind of dialogue directly (no orchestrator) from any list
of actions; checker verification uses it for mutants and null policies.
"""

from __future__ import annotations

from collections.abc import Sequence

from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.orchestrator import GREETING
from eigendspy.core.participants import TurnContext
from eigendspy.core.task import Action, Task

OPENING = "Hi, I need help with my request."
CLOSING = "Thank you, that's all. ###STOP###"
HANDBACK = "Done, I did that on my side."


def summary_text(task: Task) -> str:
    """The oracle's final message: every communicate_info string, separated so none merge."""
    infos = (task.evaluation_criteria.communicate_info or []) if task.evaluation_criteria else []
    if not infos:
        return "Your request has been handled. Is there anything else I can help with?"
    return "To summarize: " + " ; ".join(infos) + " . Is there anything else?"


def _progress(messages: Sequence[Message], task: Task) -> tuple[int, bool]:
    """(gold actions already performed, whether the user has spoken since the history)."""
    new = messages[len(task.message_history):]
    calls = sum(len(m.tool_calls or []) for m in new if m.role in ("assistant", "user"))
    user_spoke = any(m.role == "user" and m.content for m in new)
    return calls, user_spoke


class OracleAssistant:
    """Performs the assistant-side gold actions one per turn, then states the communicate info."""

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        task: Task = ctx.task
        done, _ = _progress(messages, task)
        gold = task.gold_actions
        if done < len(gold):
            action = gold[done]
            if action.requestor == "assistant":
                return Message.assistant(tool_calls=[action.as_call(f"oracle_call_{done}")])
            return Message.assistant(f"Please do this on your device: {action.name}.")
        return Message.assistant(summary_text(task))


class OracleUser:
    """Follows the scenario mechanically: opens, performs user-side gold actions, stops at the end."""

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        task: Task = ctx.task
        done, user_spoke = _progress(messages, task)
        gold = task.gold_actions
        last = messages[-1]
        if done < len(gold) and gold[done].requestor == "user" and last.role == "assistant":
            return Message.user(tool_calls=[gold[done].as_call(f"oracle_user_call_{done}")])
        if last.role == "tool":
            return Message.user(HANDBACK)
        if not user_spoke:
            return Message.user(OPENING)
        if done >= len(gold):
            return Message.user(CLOSING)
        return Message.user("Okay, please go ahead.")


def build_trajectory(
    task: Task,
    env: Environment,
    actions: Sequence[Action],
    *,
    final_text: str | None = None,
    greeting: str = GREETING,
) -> list[Message]:
    """A complete dialogue performing ``actions`` in ``env`` (mutated in place), ending in a user stop.

    Same shape as tau2's oracle "gold" trajectory: greeting (or the task's history), a user
    opening, each action as a tool call from its requestor with its tool message, a final
    assistant text and ``###STOP###``.
    """
    messages = [m.model_copy(deep=True) for m in task.message_history] or [Message.assistant(greeting)]
    messages.append(Message.user(OPENING))
    for i, action in enumerate(actions):
        call = ToolCall(id=f"oracle_call_{i}", name=action.name, arguments=dict(action.arguments),
                        requestor=action.requestor)
        msg = Message(role=action.requestor, tool_calls=[call])
        messages.append(msg)
        messages.append(env.execute(call, action.requestor))
    messages.append(Message.assistant(final_text if final_text is not None else summary_text(task)))
    messages.append(Message.user(CLOSING))
    return messages
