"""The gold-action teacher: an assistant that performs a task's verified gold actions and talks like an agent.

Why a teacher and not `eigendspy.core.oracle.OracleAssistant`: the oracle replays the gold actions at once,
whatever the user said, and ends with a bare summary. SFT on such dialogues would teach a model to act
before it was told what to do. The teacher acts only on what the dialogue has conveyed: a gold call is made
once every string value of its arguments has appeared in the user's messages or in a tool result, and
until then it asks for what is missing. It announces each write and asks for the go-ahead before making it
(a tool-call turn carries no text: tau2's contract), and ends with a confirmation that states the task's
``communicate_info`` and what was done. So the data teaches the model to act *and* to talk, and a dialogue
whose simulated user never conveyed the task fails its checker and is not accepted. Where the domain states an
ordering rule (`Domain.rules`, e.g. "look the user up first"), the teacher makes the lookup before the write
even when the task's gold actions leave it out, so the data teaches the policy too.

It plays the data engine's assistant role (`eigendspy.engine.config.Roles.assistant` takes any participant);
it only needs the task the orchestrator hands it (``ctx.task``), so it costs no LM call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.participants import TurnContext
from eigendspy.core.policy_rules import call_outcomes
from eigendspy.core.task import Action, Task

GO_AHEAD = "Shall I go ahead?"
ASK_REQUEST = "Sure, I can help with that. What would you like me to do? Please include any ids I need."
ANYTHING_ELSE = "Is there anything else I can help with?"


def describe(action: Action, domain: Any) -> str:
    """``update the status of a task (task_id task_3, status completed)``: the tool's own one-line
    description, lower-cased, with the call's arguments."""
    spec = domain.toolkit.tools.get(action.name) if domain is not None else None
    what = ((spec.description if spec else "") or action.name.replace("_", " ")).split("\n")[0].strip().rstrip(".")
    details = ", ".join(f"{k.replace('_', ' ')} {_text(v)}" for k, v in action.arguments.items())
    return f"{what[:1].lower()}{what[1:]}" + (f" ({details})" if details else "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _strings(value: Any) -> list[str]:
    """Every string (or number) inside an argument value: what the dialogue must have conveyed."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, bool) or value is None:
        return []
    return [str(value)]


class GoldTeacher:
    """Performs ``ctx.task``'s gold actions once conveyed, with templated speech (see the module doc).

    Args:
        confirm_writes: Announce each write and wait for the user's go-ahead before making it. Off: a
            conveyed write is made at once (reads always are).
        max_questions: Questions for missing information; after that many the teacher only states that it
            still needs the details (a statement, not a question), so the data never teaches asking forever.
    """

    name = "gold"

    def __init__(self, confirm_writes: bool = True, max_questions: int = 3) -> None:
        self.confirm_writes = confirm_writes
        self.max_questions = max_questions

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        task: Task = ctx.task
        domain = ctx.domain
        new = list(messages[len(task.message_history):])
        pending = _pending(task, new)
        if pending is None:
            return Message.assistant(self._final(task, domain))
        if pending.requestor == "user":
            return Message.assistant(f"Please do this on your device: {describe(pending, domain)}. "
                                     "Tell me once it is done.")
        missing = self._missing(pending, messages)
        if missing:
            return Message.assistant(self._question(pending, missing, new))
        lookup = _lookup_first(pending, messages, domain)
        if lookup is not None:
            return Message.assistant(tool_calls=[lookup.model_copy(update={"id": f"gold_lookup_{ctx.step}"})])
        is_write = domain is not None and domain.toolkit.mutates_state(pending.name)
        if is_write and self.confirm_writes and not _go_ahead_given(new):
            return Message.assistant(f"I can {describe(pending, domain)} for you. {GO_AHEAD}")
        return Message.assistant(tool_calls=[pending.as_call(f"gold_{ctx.step}")])

    @staticmethod
    def _missing(action: Action, messages: Sequence[Message]) -> list[str]:
        """Compared arguments (all, unless the action names ``compare_args``) whose values neither the user
        said nor a tool result showed, in the task's message history or since."""
        seen = " ".join((m.content or "") for m in messages if m.role in ("user", "tool")).lower()
        keys = action.arguments if action.compare_args is None else action.compare_args
        return [key for key in keys if any(s.lower() not in seen for s in _strings(action.arguments.get(key)))]

    def _question(self, action: Action, missing: list[str], new: Sequence[Message]) -> str:
        asked = sum(1 for m in new if m.role == "assistant" and m.content and m.content.endswith("?"))
        user_spoke = any(m.role == "user" and m.content for m in new)
        if not user_spoke or (len(missing) == len(action.arguments) and asked == 0):
            return ASK_REQUEST
        names = " and ".join(k.replace("_", " ") for k in missing)
        if asked >= self.max_questions:
            return f"I still need the {names} to continue."
        return f"Could you tell me the {names}?"

    @staticmethod
    def _final(task: Task, domain: Any) -> str:
        done = [describe(a, domain) for a in task.gold_actions if a.requestor == "assistant"
                and (domain is None or domain.toolkit.mutates_state(a.name))]
        infos = (task.evaluation_criteria.communicate_info or []) if task.evaluation_criteria else []
        parts = [f"All done: I did this for you: {'; '.join(done)}." if done else "Your request has been handled."]
        if infos:
            parts.append("To summarize: " + " ; ".join(infos) + " .")
        parts.append(ANYTHING_ELSE)
        return " ".join(parts)


def _pending(task: Task, new: Sequence[Message]) -> Action | None:
    """The first gold action not yet performed (matched in order against successful calls), or None."""
    ok = {m.id for m in new if m.role == "tool" and not m.error}
    calls = [(m.role, c) for m in new for c in (m.tool_calls or []) if c.id in ok]
    position = 0
    for action in task.gold_actions:
        while position < len(calls) and not (calls[position][0] == action.requestor
                                             and action.matches(calls[position][1])):
            position += 1
        if position >= len(calls):
            return action
        position += 1
    return None


def _lookup_first(action: Action, messages: Sequence[Message], domain: Any) -> ToolCall | None:
    """The lookup a domain ordering rule (`Domain.rules`, e.g. "look the user up first") requires before
    ``action`` and the dialogue has not made yet: the rule's first tool whose required arguments the action's
    own arguments fill. None when no rule guards the action, it is satisfied, or no lookup can be filled."""
    rules = getattr(domain, "rules", None) or ()
    if action.requestor != "assistant" or not rules:
        return None
    outcomes = call_outcomes(messages, "assistant")
    writes = [spec.name for spec in domain.toolkit if spec.mutates_state]
    for rule in rules:
        if action.name not in rule.blocked(outcomes, writes):
            continue
        for name in rule.first:
            spec = domain.toolkit.tools.get(name)
            if spec is not None and all(arg in action.arguments for arg in spec.required):
                return ToolCall(id="", name=name, arguments={arg: action.arguments[arg] for arg in spec.required},
                                requestor="assistant")
    return None


def _go_ahead_given(new: Sequence[Message]) -> bool:
    """Whether the user answered our last go-ahead question (any user message after it that does not stop)."""
    for i in range(len(new) - 1, -1, -1):
        m = new[i]
        if m.role == "assistant" and m.tool_calls:
            return False  # the last announced write was made; a new one needs its own go-ahead
        if m.role == "assistant" and m.content and m.content.endswith(GO_AHEAD):
            return any(r.role == "user" and r.content for r in new[i + 1:])
    return False
