"""Deterministic checks of a dialogue, run before any LLM judge: the simulated user's, then both parties'.

A dialogue the *user* spoiled says nothing about the assistant, and an LLM judge is both costly
and easy to talk into blaming the wrong party. Three user failures are visible in the text:

- a premature ``###STOP###``: the user ends the dialogue before the assistant performed the
  task's last gold write, while the assistant was waiting for the user's answer (asking to
  confirm or to proceed);
- leaked instructions: a user message repeats a long run of words (``leak_ngram`` or more) of
  the scenario's ``task_instructions`` — the user is reading its script aloud;
- invented information: the user states an identifier-like value (a token with a digit, e.g.
  an order id, a zip code, a card number) that appears neither in its scenario nor in anything
  it has been shown.

Each finding says whether it is *decisive*. A decisive finding rejects the dialogue with blame
``"user"``; a premature stop without a pending question is only a note for the judge (the
assistant may have refused or given up, which is its failure, not the user's).

`dialogue_findings` adds the checks that need no judge either, on both sides: prompt leakage and
format chatter in either party's text (`eigendspy.agents.leakage`), and the domain's policy
ordering rules (`Domain.rules`, e.g. identify the user before any write) on the assistant's tool
calls. All are decisive; chatter is blamed on its speaker, an ordering violation on the assistant.
`user_findings` stays the user-only set, since the user simulator's metric plays the user against
the oracle assistant, whose gold-action replay need not follow the policy's lookups.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from eigendspy.agents.findings import Finding
from eigendspy.agents.leakage import leakage_findings
from eigendspy.core.messages import Message
from eigendspy.core.policy_rules import call_outcomes
from eigendspy.core.task import StructuredUserInstructions, Task

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

STOP_TOKEN = "###STOP###"
_WORD = re.compile(r"[a-z0-9']+")
_VALUE = re.compile(r"[#\w][\w\-@.#/]*")
_PENDING_QUESTION = re.compile(
    r"\b(confirm|proceed|go ahead|shall i|should i|would you like me to|do you want me to|yes/no)\b", re.I
)

__all__ = ["Finding", "dialogue_findings", "ordering_findings", "user_findings"]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def premature_stop(task: Task, messages: Sequence[Message], domain: Domain) -> Finding | None:
    """The user said ``###STOP###`` before the assistant made the task's last gold write."""
    stop_at = next((i for i, m in enumerate(messages) if m.role == "user" and STOP_TOKEN in (m.content or "")), None)
    if stop_at is None:
        return None
    writes = [a for a in task.gold_actions if a.requestor == "assistant" and domain.toolkit.mutates_state(a.name)]
    if not writes:
        return None
    last = writes[-1]
    before = messages[:stop_at]
    if any(c.name == last.name for m in before if m.role == "assistant" for c in (m.tool_calls or [])):
        return None
    asked = next((m.content for m in reversed(before) if m.role == "assistant" and m.content), "") or ""
    pending = bool(_PENDING_QUESTION.search(asked))
    reason = (f"the user ended the dialogue with {STOP_TOKEN} before the assistant performed the last required "
              f"write ({last.name})")
    if pending:
        reason += f", while the assistant was waiting for an answer: {asked[:160]!r}"
    return Finding(kind="premature_stop", blame="user", reason=reason, decisive=pending)


def leaked_instructions(task: Task, messages: Sequence[Message], n: int = 10) -> Finding | None:
    """A user message repeats ``n`` or more consecutive words of the scenario's task instructions."""
    ins = task.user_scenario.instructions
    if not isinstance(ins, StructuredUserInstructions):
        return None  # unstructured instructions mix the goal (fine to say) with the script
    source = _words(ins.task_instructions)
    grams = {tuple(source[i:i + n]) for i in range(len(source) - n + 1)}
    if not grams:
        return None
    for m in messages:
        if m.role != "user" or not m.content:
            continue
        said = _words(m.content)
        for i in range(len(said) - n + 1):
            if tuple(said[i:i + n]) in grams:
                phrase = " ".join(said[i:i + n])
                return Finding(kind="leaked_instructions", blame="user",
                               reason=f"the user repeated its task instructions verbatim: '{phrase} ...'")
    return None


def invented_values(task: Task, messages: Sequence[Message]) -> Finding | None:
    """The user states an identifier-like value it was never given (scenario or visible dialogue)."""
    known = task.user_scenario.render().lower()
    for m in messages:
        if m.role == "user" and m.content and not m.tool_calls:
            for token in _VALUE.findall(m.content):
                value = token.strip(".,;:!?").lstrip("#").lower()
                if len(value) >= 5 and any(ch.isdigit() for ch in value) and value not in known:
                    return Finding(kind="invented_values", blame="user",
                                   reason=f"the user stated {token.strip('.,;:!?')!r}, which its scenario does not "
                                          "contain and it was never told")
        # what the user sees from now on: the agent's text and its own device's tool results
        if m.role == "assistant" and m.content:
            known += "\n" + m.content.lower()
        elif m.role == "tool" and m.requestor == "user":
            known += "\n" + (m.content or "").lower()
        elif m.role == "user" and m.content:
            known += "\n" + m.content.lower()
    return None


def user_findings(
    task: Task, messages: Sequence[Message], domain: Domain, *, leak_ngram: int = 10, check_invented: bool = True
) -> list[Finding]:
    """All findings about the simulated user, decisive ones first."""
    found = [premature_stop(task, messages, domain), leaked_instructions(task, messages, leak_ngram)]
    if check_invented:
        found.append(invented_values(task, messages))
    return sorted((f for f in found if f is not None), key=lambda f: not f.decisive)


def ordering_findings(messages: Sequence[Message], domain: Domain) -> list[Finding]:
    """One decisive finding per domain ordering rule the assistant's successful calls break."""
    outcomes = call_outcomes(messages, "assistant")
    writes = [spec.name for spec in domain.toolkit if spec.mutates_state]
    found = []
    for rule in domain.rules:
        bad = rule.violation(outcomes, writes)
        if bad is not None:
            quote = f" (policy: {rule.policy!r})" if rule.policy else ""
            found.append(Finding(kind="policy_order", blame="assistant",
                                 reason=f"the assistant called {bad.name} (message {bad.index}) without first "
                                        f"making {rule.describe()}{quote}"))
    return found


def dialogue_findings(
    task: Task | None, messages: Sequence[Message], domain: Domain, *, leak_ngram: int = 10,
    check_invented: bool = True, assistant_instructions: Sequence[str] = (),
) -> list[Finding]:
    """Every pre-check finding about both parties, decisive ones first (user before assistant).

    Args:
        task: The dialogue's task; None (an export of a record whose task is gone) skips the user checks
            that compare the user's words with the task's scenario, and keeps the rest.
        assistant_instructions: Prompt texts the assistant was given beyond the built-in ones (an
            optimized program's instructions), checked for recital like them.
    """
    found = [*(user_findings(task, messages, domain, leak_ngram=leak_ngram, check_invented=check_invented)
               if task is not None else []),
             *leakage_findings(messages, "user"),
             *leakage_findings(messages, "assistant", policy=domain.policy, instructions=assistant_instructions),
             *ordering_findings(messages, domain)]
    return sorted(found, key=lambda f: not f.decisive)
