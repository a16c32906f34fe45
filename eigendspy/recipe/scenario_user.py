"""The evaluation user: one deterministic customer, played identically against every column.

Why deterministic and not the SFT'd user model: evaluation compares agents, so the user must be the same
for every column and must convey the task every time. A model user (base or SFT'd) adds its own failures —
a request never made, a stop too early — which would be charged to whichever agent met it, and it is a
column's training partner (the SFT'd user is what ``sft_grpo`` trained against), so it would favour that
column. This user says exactly what the synthesis user could say, from the same scenario
(`eigendspy.agents.user_simulator.small_utterances`: the request, each known fact, a confirmation, the
goodbye), so synthesized held-out tasks look like the training dialogues; for tau2's free-text scenarios
the request is the scenario's instruction text.

Rules, each turn: perform the user's own leading gold device actions first (dual control); state the
request; once the agent has made a write (or a transfer) since the request, stop at its next message
(after any remaining device actions); answer a go-ahead question with the confirmation; answer another
question with the next unsaid fact (and, once they are all said, with the scenario's task instructions);
stop after ``max_turns`` turns without progress.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from eigendspy.agents.user_simulator import SMALL_CONFIRM, SMALL_STOP, small_utterances
from eigendspy.core.messages import Message
from eigendspy.core.participants import TurnContext
from eigendspy.core.task import Action, StructuredUserInstructions, Task

_GO_AHEAD = re.compile(r"\b(confirm|proceed|go ahead|shall i|should i|would you like me to|do you want me to)\b",
                       re.I)


class ScenarioUser:
    """Deterministic user for evaluation (see the module doc).

    Args:
        max_turns: User messages after which it stops, whatever the agent did.
    """

    name = "scenario"

    def __init__(self, max_turns: int = 5) -> None:
        self.max_turns = max_turns

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        task: Task = ctx.task
        new = list(messages[len(task.message_history):])
        options = small_utterances(task, [])
        request, facts = options[0], [o for o in options[1:] if o != SMALL_CONFIRM]
        said = [m.content for m in new if m.role == "user" and m.content]
        device = _device_action(task, new, request_said=request in said)
        if device is not None:
            return Message.user(tool_calls=[device.as_call(f"user_{len(new)}")])
        if request not in said:
            return Message.user(request)
        last = next((m.content or "" for m in reversed(new) if m.role == "assistant" and m.content), "")
        if _acted_since(new, request, ctx.domain) or len(said) >= self.max_turns:
            return Message.user(SMALL_STOP)
        if _GO_AHEAD.search(last):
            return Message.user(SMALL_CONFIRM)
        unsaid = [f for f in [*facts, _instructions(task)] if f and f not in said]
        if last.rstrip().endswith("?") and unsaid:
            return Message.user(unsaid[0])
        return Message.user(SMALL_CONFIRM if SMALL_CONFIRM not in said else SMALL_STOP)


def _instructions(task: Task) -> str | None:
    """A structured scenario's task instructions: the user's last resort when asked and out of facts."""
    ins = task.user_scenario.instructions
    return ins.task_instructions.strip() if isinstance(ins, StructuredUserInstructions) else None


def _acted_since(new: Sequence[Message], request: str, domain: Any) -> bool:
    """Whether the agent made a successful write (or transfer) after the request was said."""
    start = next((i for i, m in enumerate(new) if m.role == "user" and m.content == request), len(new))
    ok = {m.id for m in new if m.role == "tool" and not m.error}
    calls = [c for m in new[start:] if m.role == "assistant" for c in (m.tool_calls or [])]
    return any(c.id in ok and (c.name.startswith("transfer") or domain.mutates_state(c.name)) for c in calls)


def _device_action(task: Task, new: Sequence[Message], *, request_said: bool) -> Action | None:
    """The next user-side gold action to perform now: leading ones (before the first assistant action) right
    away, the others once the agent has acted on the request."""
    done = [c for m in new if m.role == "user" for c in (m.tool_calls or [])]
    agent_called = any(m.role == "assistant" and m.tool_calls for m in new)
    leading = True
    for action in task.gold_actions:
        if action.requestor == "assistant":
            leading = False
            continue
        if any(action.matches(c) for c in done):
            continue
        if leading or (request_said and agent_called):
            return action
        return None
    return None
