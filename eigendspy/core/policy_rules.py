"""Ordering rules a domain states about its policy, checked deterministically on a dialogue.

Why: a policy's "look the customer up before you change anything" is the rule a small assistant
skips most often, and nothing else catches it — the checker grades the final database, which is
the same whether or not the assistant authenticated first, and the LLM judges that read the policy
are off for a small model. An ordering rule is the part of such a sentence a program can check:
*before the assistant's first successful call of one tool, a successful call of another*. The
domain declares its rules next to its policy (``Domain(rules=[...])``), each quoting the policy
sentence it encodes, so a reader can check the rule against the text it claims to follow.

Only the assistant's calls count, and only successful ones (the tool message has ``error`` false):
a lookup that failed ("user not found") identified nobody, and a write that failed changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from eigendspy.core.messages import Message, ToolCall


class CallOutcome(BaseModel):
    """One tool call of one side, in dialogue order, and whether its tool message reported success."""

    model_config = ConfigDict(frozen=True)

    index: int
    """Position of the calling message in the dialogue."""
    name: str
    ok: bool
    """A tool message answered the call without an error (an unanswered call is not ok)."""


def call_outcomes(messages: Sequence[Message], side: str = "assistant") -> list[CallOutcome]:
    """``side``'s tool calls in order, each paired with the tool message that answered it.

    Tool messages are matched to the pending calls by id, and to the oldest pending call when the
    id matches none (dialogues whose calls carry no ids).
    """
    pending: list[tuple[int, ToolCall]] = []
    answered: dict[int, bool] = {}
    calls: list[tuple[int, int, ToolCall]] = []  # (message index, serial, call)
    for i, m in enumerate(messages):
        if m.role in ("assistant", "user") and m.tool_calls:
            pending = []
            for call in m.tool_calls:
                serial = len(calls)
                calls.append((i, serial, call))
                pending.append((serial, call))
        elif m.role == "tool" and pending:
            match = next((p for p in pending if p[1].id and p[1].id == m.id), pending[0])
            pending.remove(match)
            answered[match[0]] = not m.error
    return [CallOutcome(index=i, name=call.name, ok=answered.get(serial, False))
            for i, serial, call in calls if messages[i].role == side]


class RequireBefore(BaseModel):
    """Before the assistant's first successful call of a ``then`` tool, one of ``first`` succeeded.

    ``then`` left out means every write tool of the domain (``@tool(kind="write")``).

    Example:
        ```python
        RequireBefore(first=["get_users"], then=["create_task"],
                      policy="Only users that already exist in the system may own tasks; look the user up first.")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: list[str] = Field(min_length=1)
    then: list[str] | None = None
    policy: str = ""
    """The policy sentence this rule encodes (quoted in every violation)."""

    def tool_names(self) -> set[str]:
        """Every tool the rule names (a domain checks they exist)."""
        return set(self.first) | set(self.then or ())

    def guarded(self, writes: Iterable[str]) -> set[str]:
        """The tools that need a prior ``first`` call, given the domain's write tools."""
        return set(self.then) if self.then is not None else set(writes)

    def describe(self) -> str:
        then = " / ".join(self.then) if self.then is not None else "any write tool"
        return f"a successful {' / '.join(self.first)} call before {then}"

    def blocked(self, outcomes: Sequence[CallOutcome], writes: Iterable[str]) -> set[str]:
        """The guarded tools a call now would break the rule with: all of them until a ``first`` call succeeded."""
        if any(call.ok and call.name in self.first for call in outcomes):
            return set()
        return self.guarded(writes)

    def violation(self, outcomes: Sequence[CallOutcome], writes: Iterable[str]) -> CallOutcome | None:
        """The first successful guarded call made before any successful ``first`` call, if any."""
        guarded, first = self.guarded(writes), set(self.first)
        for call in outcomes:
            if call.ok and call.name in first:
                return None
            if call.ok and call.name in guarded:
                return call
        return None


class IdentifyBeforeWrite(RequireBefore):
    """The commonest rule: identify the customer (a successful ``identify_with`` call) before any write.

    Example:
        ```python
        IdentifyBeforeWrite(identify_with=["find_user_id_by_email", "find_user_id_by_name_zip"],
                            policy="Verify the customer before anything else ...")
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    first: list[str] = Field(min_length=1, validation_alias=AliasChoices("identify_with", "first"))
    then: None = None

    def describe(self) -> str:
        return f"identify the user ({' / '.join(self.first)}) before any write"


OrderingRule = RequireBefore
"""What ``Domain(rules=...)`` holds: `RequireBefore` or one of its specialisations."""


def blocked_tools(rules: Iterable[RequireBefore], messages: Sequence[Message], writes: Iterable[str]) -> set[str]:
    """The tools the assistant may not call next without breaking one of ``rules`` (small-model mode leaves them
    out of a turn's choices, so its grammar makes the lookup first instead of a call the pre-checks reject)."""
    outcomes, writes = call_outcomes(messages, "assistant"), list(writes)
    return set().union(*(rule.blocked(outcomes, writes) for rule in rules))
