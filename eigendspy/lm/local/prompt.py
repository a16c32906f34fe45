"""Prompt building for the embedded local LM (:mod:`eigendspy.lm.local.engine`): messages, schema, context fit.

* :func:`chat_messages` turns a canonical lm15 request into text-only ``[{"role", "content"}]``
  messages a chat template can render;
* :func:`response_schema` reads the JSON schema (if any) to constrain decoding with;
* :func:`fit_prompt` renders the messages with the tokenizer and keeps them inside a token budget.

Prompts are kept inside the context window (``max_position_embeddings`` minus the generation
budget): when too long, whole messages are dropped from the middle of the conversation (the
system message and the last message stay) and the first message after the gap is prefixed with
``[... N earlier messages omitted to fit the context window ...]``; if one message alone is still
too long, the middle of its text is cut, leaving ``[... N tokens omitted ...]``. The Response's
``provider_data["prompt_truncated"]`` records that it happened.
"""

from __future__ import annotations

import json
from typing import Any

from dspy.clients.lm15_boundary import history_messages, request_kwargs
from dspy.lm15 import Request

__all__ = ["chat_messages", "encode_prompt", "fit_prompt", "response_schema"]


def _text(content: Any) -> str:
    """Plain text of an OpenAI-style message content (str or list of parts)."""
    if content is None or isinstance(content, str):
        return content or ""
    bad = [p for p in content if not (isinstance(p, dict) and p.get("type") == "text")]
    if bad:
        raise ValueError(f"the local model reads text only, not {bad[0]!r}")
    return "".join(p.get("text", "") for p in content)


def chat_messages(request: Request) -> list[dict[str, str]]:
    """The request as ``[{"role", "content"}]`` with text-only content, ready for a chat template.

    Tool calls and tool results (which only appear if a caller builds them by hand: the engine
    offers no native tools) are written as text, since small templates know no ``tool`` role.
    """
    try:
        raw = request_kwargs(request, "chat")["messages"]
    except Exception:  # content the chat dialect cannot carry: DSPy's own history snapshot
        raw = history_messages(request)
    messages = []
    for m in raw:
        role, text = m.get("role", "user"), _text(m.get("content"))
        if m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
            text = (text + "\n" if text else "") + json.dumps({"tool_calls": calls}, ensure_ascii=False)
        if role == "tool":
            role, text = "user", f"Tool result: {text}"
        messages.append({"role": "system" if role == "developer" else role, "content": text})
    return messages


def response_schema(response_format: dict[str, Any] | None) -> tuple[dict[str, Any], bool] | None:
    """``(schema, strict)`` to constrain decoding with, or None for free text.

    Accepts lm15's canonical ``{"type": "json_schema", "schema": ...}``, the OpenAI shape
    ``{"type": "json_schema", "json_schema": {"schema": ...}}`` and ``{"type": "json_object"}``
    (any object: not strict, so arbitrary keys are allowed).
    """
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}, False
    if kind == "json_schema":
        schema = response_format.get("schema") or (response_format.get("json_schema") or {}).get("schema")
        if schema:
            return schema, True
        return {"type": "object"}, False
    return None


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template, ready for generation."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:  # a base model: a plain transcript still works
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_prompt(tokenizer: Any, messages: list[dict[str, str]], budget: int) -> tuple[list[int], bool]:
    """Token ids of the rendered prompt, cut to ``budget`` tokens (see the module doc), and whether it was cut.

    Raises:
        ValueError: Even the cut prompt does not fit (budget too small for the template).
    """
    ids = encode_prompt(tokenizer, messages)
    if len(ids) <= budget:
        return ids, False
    msgs = [dict(m) for m in messages]
    first = 1 if msgs and msgs[0]["role"] == "system" else 0
    dropped = 0
    while len(ids) > budget and len(msgs) - first > 1:
        del msgs[first]
        dropped += 1
        marked = [dict(m) for m in msgs]
        note = f"[... {dropped} earlier messages omitted to fit the context window ...]\n\n"
        marked[first]["content"] = note + marked[first]["content"]
        ids = encode_prompt(tokenizer, marked)
    msgs = marked if dropped else msgs
    if len(ids) > budget:  # one message is too long by itself: cut the middle of the longest
        longest = max(range(len(msgs)), key=lambda i: len(msgs[i]["content"]))
        tokens = tokenizer(msgs[longest]["content"], add_special_tokens=False)["input_ids"]
        cut = len(ids) - budget + 16  # + the marker; re-tokenisation at the seams may cost more: retry
        for _ in range(4):
            keep = len(tokens) - cut
            if keep < 16:
                break
            msgs[longest]["content"] = (
                tokenizer.decode(tokens[: keep // 2])
                + f"\n[... {cut} tokens omitted to fit the context window ...]\n"
                + tokenizer.decode(tokens[len(tokens) - (keep - keep // 2) :])
            )
            ids = encode_prompt(tokenizer, msgs)
            if len(ids) <= budget:
                break
            cut += len(ids) - budget
    if len(ids) > budget:
        raise ValueError(f"prompt needs {len(ids)} tokens even after truncation; the budget is {budget}")
    return ids, True
