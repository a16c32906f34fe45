"""Chat template <-> token ids for multi-turn rollouts, without ever re-tokenising sampled text.

The problem: a multi-turn episode alternates sampled assistant tokens with text the policy did not
write (tool results, user replies). Re-rendering and re-tokenising the whole dialogue each turn
would replace the sampled ids by a tokenisation of their decoded text — usually, not always, the
same ids — and GRPO would then score tokens the policy never produced.

The fix: keep the token ids of the dialogue so far and extend them only by the *tokenised delta*
of the rendering. The chat template is prefix-stable (rendering ``messages[:n]`` is a prefix of
rendering ``messages[:n+k]``), so the delta after the policy's last end-of-turn token is exactly
the text that the newer messages add. `ChatTokens` checks that property and fails loudly on a
template that breaks it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.render import ChatPrompt, training_messages

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


class TemplateError(RuntimeError):
    """The chat template is not prefix-stable, so incremental tokenisation would be wrong."""


def render_text(tokenizer: Any, prompt: ChatPrompt, *, add_generation_prompt: bool) -> str:
    """Render a `ChatPrompt` with the tokenizer's chat template (tool-call arguments as dicts; a malformed
    call is shown as the text the model wrote)."""
    return tokenizer.apply_chat_template(training_messages(prompt, strict=False), tools=prompt.tools or None,
                                         tokenize=False, add_generation_prompt=add_generation_prompt)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class ChatTokens:
    """The token ids of one episode as seen by one side, extended turn by turn.

    ``ids`` always ends with the last token the model sampled (plus an end-of-turn token added
    when the sample was cut at the length limit); `prompt_for` returns the ids to generate from
    next, `record` appends what was sampled.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.eos_text: str = tokenizer.eos_token
        self.ids: list[int] = []
        self._n: int | None = None  # rendered messages up to and including our last sampled one

    def prompt_for(self, prompt: ChatPrompt) -> list[int]:
        """Token ids of ``prompt`` followed by the generation prompt."""
        text = render_text(self.tokenizer, prompt, add_generation_prompt=True)
        if self._n is None:
            self.ids = encode(self.tokenizer, text)
            return list(self.ids)
        earlier = ChatPrompt(messages=prompt.messages[: self._n], tools=prompt.tools)
        before = render_text(self.tokenizer, earlier, add_generation_prompt=False)
        cut = before.rfind(self.eos_text)
        if cut < 0 or not text.startswith(before[: cut + len(self.eos_text)]):
            raise TemplateError("the chat template is not prefix-stable: rendering the dialogue so far does not "
                                "start with the rendering of its earlier part; incremental tokenisation is impossible")
        self.ids = self.ids + encode(self.tokenizer, text[cut + len(self.eos_text):])
        return list(self.ids)

    def record(self, prompt: ChatPrompt, token_ids: Sequence[int]) -> None:
        """Append the ids sampled in answer to ``prompt`` (the dialogue before this turn)."""
        self.ids = self.ids + list(token_ids)
        eos_id = self.tokenizer.eos_token_id
        if not token_ids or token_ids[-1] != eos_id:
            self.ids.append(eos_id)  # cut at the length limit: close the turn as the template would
        self._n = len(prompt.messages) + 1


def parse_completion(text: str, role: str) -> Message:
    """Turn a Qwen2.5/Hermes-style completion into a message: tool calls if any, else text.

    A call whose JSON does not parse still becomes a tool call (named ``invalid_tool_call`` or with
    its string arguments), so the environment answers it with an error the model sees next turn —
    a malformed call is the model's mistake, never a crash.
    """
    blocks = _TOOL_CALL.findall(text)
    if not blocks:
        return Message(role=role, content=text.strip())
    calls = []
    for i, block in enumerate(blocks):
        call_id = f"call_{uuid.uuid4().hex[:12]}_{i}"
        try:
            payload = json.loads(block)
        except json.JSONDecodeError:
            calls.append(ToolCall(id=call_id, name="invalid_tool_call", arguments=block, requestor=role))
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            calls.append(ToolCall(id=call_id, name="invalid_tool_call", arguments=block, requestor=role))
            continue
        args = payload.get("arguments", {})
        if not isinstance(args, dict | str):
            args = json.dumps(args)
        calls.append(ToolCall(id=call_id, name=payload["name"], arguments=args, requestor=role))
    return Message(role=role, content=None, tool_calls=calls)
