"""The scripted LM's view of a request (:mod:`eigendspy.testing.lm`): what the adapter asked for, pre-parsed.

:func:`build_request_view` reads a canonical lm15 request the way a policy wants it: OpenAI-style
messages and tools, the input fields and their rendered values, the output fields and their types,
the instructions and whether the adapter expects JSON. :class:`ScriptedRequest` is the result, the
argument every scripted policy receives; both are re-exported from :mod:`eigendspy.testing.lm`.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple

import pydantic
from dspy.clients.lm15_boundary import history_messages, request_kwargs
from dspy.lm15 import Request

__all__ = ["ScriptedRequest", "build_request_view", "message_text"]

_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.*?)\):", re.MULTILINE)
_HEADER = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$", re.MULTILINE)
_OBJECTIVE = "In adhering to this structure, your objective is:"
_REQUIREMENT = re.compile(r"\n\nRespond with (?:the corresponding output fields|a JSON object)[^\n]*\s*$")


def message_text(message: dict[str, Any]) -> str:
    """Text of an OpenAI-style message (string content or the text of its content parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def _fields(system: str, start: str, end: str) -> dict[str, str]:
    """Parse DSPy's numbered field list (`1. \\`name\\` (type): desc`) between two headings."""
    if start not in system:
        return {}
    section = system.split(start, 1)[1]
    section = section.split(end, 1)[0] if end else section
    return {m.group(1): m.group(2) for m in _FIELD_LINE.finditer(section)}


def _headers(text: str) -> Iterator[re.Match[str]]:
    """``_HEADER.finditer(text)``, tried only where a header can start (``[[ ## ``): a MULTILINE ``^`` makes
    ``finditer`` try every position of a ~15 kB prompt. Same matches, in order (a match starts with that text)."""
    start = text.find("[[ ## ")
    while start != -1:
        match = _HEADER.match(text, start)
        if match is not None:
            yield match
        start = text.find("[[ ## ", match.end() if match is not None else start + 1)


def _inputs(user: str, names: Sequence[str]) -> dict[str, str]:
    # the reminder can only match where its literal start is, and only as the text's last line: substitute in
    # the tail from its last start only (same result; a forward search would scan the ~14 kB prompt again)
    tail = user.rfind("\n\nRespond with ")
    if tail != -1:
        user = user[:tail] + _REQUIREMENT.sub("", user[tail:])
    headers = [m for m in _headers(user) if m.group(1) in names]
    values = {}
    ends = [m.start() for m in headers[1:]] + [len(user)]
    for here, end in zip(headers, ends[: len(headers)], strict=True):
        values[here.group(1)] = user[here.end() : end].strip()
    return values


def _openai_view(request: Request) -> dict[str, Any]:
    """OpenAI chat-body view of a canonical request, via DSPy's own dialect mapping."""
    try:
        return request_kwargs(request, "chat")
    except Exception:  # content the chat dialect cannot carry: fall back to DSPy's history snapshot
        tools = [
            {"type": "function", "function": {"name": t.name, "parameters": getattr(t, "parameters", {})}}
            for t in request.tools
        ]
        return {"messages": history_messages(request), **({"tools": tools} if tools else {})}


class ScriptedRequest(pydantic.BaseModel):
    """What the policy sees: the request, pre-parsed from the adapter's prompt.

    Attributes:
        model: The LM's model string.
        call_index: 0-based position of this call in the LM's call log.
        messages: OpenAI chat-style messages (system first, tool calls/results included).
        tools: OpenAI function schemas offered natively, or None.
        tool_choice: OpenAI-style tool choice, when the adapter set one.
        response_format: lm15 canonical format (``{"type": "json_schema", "schema": ...}``) or None.
        adapter_format: ``"json"`` when the adapter expects a JSON object, else ``"chat"``.
        output_fields: Output field names the adapter asked for, in order (native tool fields excluded).
        output_types: Type names DSPy printed for those fields (e.g. ``"int"``, ``"ToolCalls"``).
        input_fields: Input field names the adapter rendered.
        inputs: Rendered text of each input field in the final user message.
        instructions: The signature's instructions (task description).
        params: Remaining OpenAI-style request options (temperature, max_tokens, ...).
    """

    model_config = pydantic.ConfigDict(frozen=True)

    model: str
    call_index: int
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    adapter_format: Literal["chat", "json"] = "chat"
    output_fields: list[str] = pydantic.Field(default_factory=list)
    output_types: dict[str, str] = pydantic.Field(default_factory=dict)
    input_fields: list[str] = pydantic.Field(default_factory=list)
    inputs: dict[str, str] = pydantic.Field(default_factory=dict)
    instructions: str = ""
    params: dict[str, Any] = pydantic.Field(default_factory=dict)

    @property
    def system(self) -> str:
        """The system message text ('' when absent)."""
        return next((message_text(m) for m in self.messages if m.get("role") == "system"), "")

    @property
    def last_user_message(self) -> str:
        """Text of the final user message, the adapter's main request."""
        return next((message_text(m) for m in reversed(self.messages) if m.get("role") == "user"), "")

    @property
    def tool_names(self) -> list[str]:
        """Names of the natively offered tools."""
        return [t.get("function", {}).get("name", "") for t in self.tools or []]

    @property
    def tool_call_field(self) -> str | None:
        """The ``dspy.ToolCalls`` output field when tool calls must be written as text."""
        return next((n for n, t in self.output_types.items() if t == "ToolCalls"), None)


class _SystemParts(NamedTuple):
    outputs: dict[str, str]
    inputs: dict[str, str]
    instructions: str
    json_system: bool


@functools.lru_cache(maxsize=64)
def _system_parts(system: str) -> _SystemParts:
    """What a view reads from the system message, parsed once per distinct text: a role's system message is
    the same ~10 kB on every call (callers copy the dicts)."""
    return _SystemParts(
        outputs=_fields(system, "Your output fields are:", "All interactions will be structured"),
        inputs=_fields(system, "Your input fields are:", "Your output fields are:"),
        instructions=textwrap.dedent(system.split(_OBJECTIVE, 1)[1]).strip() if _OBJECTIVE in system else "",
        json_system="Outputs will be a JSON object" in system,
    )


def build_request_view(request: Request, call_index: int) -> ScriptedRequest:
    """Parse what the adapter asked for out of a canonical lm15 request.

    Field names come from the "Your output fields are:" list that Chat/JSON adapters put in the
    system message (it lists only fields the model must write, so natively handled tool fields are
    absent); the response_format schema and the last-message reminder are fallbacks.
    """
    body = _openai_view(request)
    messages, fmt = body.pop("messages"), request.config.response_format
    system = next((message_text(m) for m in messages if m.get("role") == "system"), "")
    user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    parsed = _system_parts(system)
    outputs = dict(parsed.outputs)
    if not outputs and fmt and fmt.get("type") == "json_schema":
        outputs = dict.fromkeys(fmt["schema"].get("properties", {}), "")
    if not outputs:
        outputs = dict.fromkeys((n for n in re.findall(r"`\[\[ ## (\w+) ## \]\]`", user) if n != "completed"), "")
    inputs = dict(parsed.inputs)
    is_json = fmt is not None or parsed.json_system or "Respond with a JSON object" in user
    body.pop("response_format", None)
    return ScriptedRequest(
        model=request.model,
        call_index=call_index,
        messages=messages,
        tools=body.pop("tools", None) or None,
        tool_choice=body.pop("tool_choice", None),
        response_format=fmt,
        adapter_format="json" if is_json else "chat",
        output_fields=list(outputs),
        output_types=outputs,
        input_fields=list(inputs),
        inputs=_inputs(user, list(inputs)),
        instructions=parsed.instructions,
        params=body,
    )
