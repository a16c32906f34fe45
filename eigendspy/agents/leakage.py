"""Prompt leakage and format chatter in a dialogue's text: deterministic, decisive checks.

Why: a small model that cannot tell its prompt from its answer writes the prompt into the answer —
"You are a customer service agent. You must provide a valid JSON object...", a ``[[ ## response ## ]]``
marker, a "user:" line continuing the transcript. With the LLM judges off (the embedded model is too
small to judge) such a dialogue still passes the checker, since the database ends right, and would be
exported as training data that teaches the next model to do the same. These checks read only the
text the two parties said, so they run whether or not a judge does.

Two families, each finding decisive and blamed on the speaker:

- *prompt leak* (``kind="prompt_leak:<source>"``): a message shares a long run of consecutive words
  with a text the speaker was prompted with — the assistant with the domain policy
  (`POLICY_NGRAM` words) or its instructions (`INSTRUCTION_NGRAM` words: the system messages DSPy's
  chat and JSON adapters build from the role's signature, and the trained model's
  ``AGENT_INSTRUCTIONS``); the user with its instructions (its signatures' system messages and
  ``USER_GUIDELINES``). Phrases a policy puts in quotes are meant to be said verbatim ("YOU ARE
  BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON.") and never count. The policy run is long
  because agents legitimately quote a rule when they refuse ("an order can only be cancelled if its
  status is pending"); a recital runs on for sentences. The user reciting its *scenario* is
  `trajectory_prechecks.leaked_instructions`.
- *format chatter* (``kind="format_chatter:<pattern>"``): a message matches one of
  `CHATTER_PATTERNS`, each a small regular expression for structure no customer-service message
  contains.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dspy

from eigendspy.agents.findings import Finding
from eigendspy.core.messages import Message
from eigendspy.core.render import AGENT_INSTRUCTIONS, USER_GUIDELINES, USER_TOOL_GUIDELINES
from eigendspy.signatures.assistant import AssistantTurn
from eigendspy.signatures.user import UserTurn
from eigendspy.signatures.user_tools import UserToolTurn

POLICY_NGRAM = 20
"""Consecutive words shared with the policy that make a recital (quoting one rule stays below it)."""
INSTRUCTION_NGRAM = 8
"""Consecutive words shared with the role's instructions that make a leak (no reply needs any)."""

_WORD = re.compile(r"[a-z0-9']+")
# A quoted phrase: double quotes, or single quotes that are not apostrophes ("customer's").
_QUOTED = re.compile(r"\"[^\"\n]+\"|“[^”\n]+”|(?<!\w)'[^'\n]+'(?!\w)")
_LINE_START = r"^[ \t>]*[*_`]*"
_LABEL_END = r"[*_`]*[ \t]*:"


@dataclass(frozen=True)
class ChatterPattern:
    """One kind of format chatter: its name (reported in the finding), regex and why it is chatter."""

    name: str
    regex: re.Pattern[str]
    why: str


def _pattern(name: str, regex: str, why: str) -> ChatterPattern:
    return ChatterPattern(name, re.compile(regex, re.I | re.M), why)


CHATTER_PATTERNS: tuple[ChatterPattern, ...] = (
    _pattern("field_marker", r"\[\[\s*##[^\]\n]*##\s*\]\]",
             "DSPy's field delimiters (``[[ ## response ## ]]``): the model is writing its prompt's layout"),
    _pattern("format_instruction", r"\bvalid json\b|\bjson (?:object|format|schema|output)\b|```\s*json"
                                   r"|\b(?:input|output) fields?\b",
             "talk about the output format (JSON objects, input/output fields): the prompt's, not the customer's"),
    _pattern("field_label", r"\b(?:next_tool_name|next_tool_args|next_thought|tool_calls|tool_args|tool_name)\b"
                            r"|\"(?:reasoning|response|message)\"\s*:"
                            rf"|{_LINE_START}(?:reasoning|response|message|tool calls){_LABEL_END}",
             "an output field's name used as a label or JSON key (``reasoning:``, ``\"response\":``)"),
    _pattern("role_label", rf"{_LINE_START}(?:assistant|user|system|agent|you){_LABEL_END}",
             "a speaker label at a line's start: the model is writing a transcript, not a message"),
    _pattern("transcript_marker", r"\[(?:(?:assistant|user) )?tool (?:call|result)",
             "the transcript's tool markers (``[tool call]``, ``[tool result]``)"),
    _pattern("ai_disclaimer", r"\bas an? (?:ai|artificial intelligence)(?: language)? (?:model|assistant)\b"
                              r"|\bi(?:'m| am) (?:just |only )?an ai(?: language)? model\b",
             "a language model talking about itself"),
    _pattern("role_preamble", r"\byou are an? (?:customer service agent|customer contacting|helpful assistant)\b",
             "the opening line of a role prompt"),
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@functools.lru_cache(maxsize=64)
def _grams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    """The ``n``-word runs of ``text`` outside quoted phrases (a run never spans a quote)."""
    out: set[tuple[str, ...]] = set()
    for segment in _QUOTED.split(text):
        words = _words(segment)
        out.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def assistant_instructions() -> str:
    """Everything the assistant is told besides the policy: DSPy's system messages for its signature
    (chat and JSON adapters: field names, descriptions, layout, instructions) and the trained model's."""
    return "\n".join([*(a.format_system_message(AssistantTurn) for a in (dspy.ChatAdapter(), dspy.JSONAdapter())),
                      AGENT_INSTRUCTIONS])


@functools.lru_cache(maxsize=1)
def user_instructions() -> str:
    """Everything the simulated user is told besides its scenario (both signatures, both adapters)."""
    adapters = (dspy.ChatAdapter(), dspy.JSONAdapter())
    return "\n".join([*(a.format_system_message(sig) for sig in (UserTurn, UserToolTurn) for a in adapters),
                      USER_GUIDELINES, USER_TOOL_GUIDELINES])


def _spoken(messages: Sequence[Message], side: str) -> Iterable[str]:
    return (m.content for m in messages if m.role == side and m.content)


def _excerpt(text: str, start: int, end: int, pad: int = 30) -> str:
    snippet = " ".join(text[max(0, start - pad):end + pad].split())
    return snippet if len(snippet) <= 120 else snippet[:117] + "..."


def format_chatter(messages: Sequence[Message], side: str,
                   patterns: Sequence[ChatterPattern] = CHATTER_PATTERNS) -> Finding | None:
    """The first of ``side``'s messages that matches a chatter pattern, as a decisive finding."""
    for text in _spoken(messages, side):
        for pattern in patterns:
            hit = pattern.regex.search(text)
            if hit:
                return Finding(kind=f"format_chatter:{pattern.name}", blame=side,
                               reason=f"the {side} wrote format chatter ({pattern.name}: {pattern.why}): "
                                      f"{_excerpt(text, hit.start(), hit.end())!r}")
    return None


def prompt_leak(messages: Sequence[Message], side: str, source_name: str, source: str, n: int) -> Finding | None:
    """The first run of ``n`` or more words a ``side`` message shares with ``source`` (quotes excepted)."""
    grams = _grams(source, n)
    if not grams:
        return None
    for text in _spoken(messages, side):
        said = _words(text)
        for i in range(len(said) - n + 1):
            if tuple(said[i:i + n]) in grams:
                end = i + n
                while end < len(said) and tuple(said[end - n + 1:end + 1]) in grams:
                    end += 1
                run = " ".join(said[i:min(end, i + 16)]) + (" ..." if end > i + 16 else "")
                return Finding(kind=f"prompt_leak:{source_name}", blame=side,
                               reason=f"the {side} recited its {source_name} verbatim ({end - i} words in a row): "
                                      f"'{run}'")
    return None


def leakage_findings(messages: Sequence[Message], side: str, *, policy: str = "",
                     instructions: Sequence[str] = ()) -> list[Finding]:
    """Prompt-leak and format-chatter findings about ``side`` (``"assistant"`` or ``"user"``).

    Args:
        messages: The dialogue.
        side: Whose text to check.
        policy: The domain policy (checked for the assistant only: the user never sees it).
        instructions: Extra prompt texts ``side`` was given (e.g. an optimized program's instructions),
            checked like the built-in ones.
    """
    own = assistant_instructions() if side == "assistant" else user_instructions()
    found = [prompt_leak(messages, side, "instructions", "\n".join([own, *instructions]), INSTRUCTION_NGRAM)]
    if side == "assistant" and policy:
        found.append(prompt_leak(messages, side, "policy", policy, POLICY_NGRAM))
    found.append(format_chatter(messages, side))
    return [f for f in found if f is not None]
