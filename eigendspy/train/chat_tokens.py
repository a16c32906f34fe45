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

SFT builds its sequences the same way (`tokenize_dialogue`): each assistant turn is tokenised as the
ids a rollout would have sampled for it, and the rest comes from the same deltas, so supervised and
RL training put their loss on the same tokens: the turn's content or tool calls and its end-of-turn
token, never the role header before it or the template's newline after it.

A chat template that cannot render tools (`renders_tools` probes it) gets the dialogue through
`render.inline_tools` instead, here in `render_text`, the one place every stage's tokens are made.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.render import ChatPrompt, inline_tools, training_messages

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

Renderer = Callable[[ChatPrompt, bool], str]
"""``render(prompt, add_generation_prompt) -> text``: `render_text` bound to a tokenizer, or a memo of it."""


class TemplateError(RuntimeError):
    """The chat template cannot be tokenised turn by turn: it is not prefix-stable, or it does not close an
    assistant turn with the eos token (so the assistant's own tokens cannot be told apart)."""


_PROBE_TOOL = "probe_tool_schema_7e1f"
_PROBE_CALL = "probe_tool_call_7e1f"
_PROBE_RESULT = "probe tool result 7e1f"
_TOOL_SUPPORT: dict[str, bool] = {}


def renders_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template shows tool schemas, tool calls and tool results.

    Probed by rendering a small dialogue that has all three and looking for each in the text (a
    template that raises on it counts as not rendering tools). Cached per template text.
    """
    template = str(tokenizer.chat_template)
    if template not in _TOOL_SUPPORT:
        schema = {"type": "function", "function": {"name": _PROBE_TOOL, "description": "probe",
                                                   "parameters": {"type": "object", "properties": {}}}}
        call = {"id": "probe", "type": "function", "function": {"name": _PROBE_CALL, "arguments": {}}}
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "probe", "content": _PROBE_RESULT}]
        try:
            text = tokenizer.apply_chat_template(messages, tools=[schema], tokenize=False)
        except Exception:  # jinja raises many kinds of errors on a turn it cannot render
            text = ""
        _TOOL_SUPPORT[template] = all(probe in text for probe in (_PROBE_TOOL, _PROBE_CALL, _PROBE_RESULT))
    return _TOOL_SUPPORT[template]


def render_text(tokenizer: Any, prompt: ChatPrompt, *, add_generation_prompt: bool) -> str:
    """Render a `ChatPrompt` with the tokenizer's chat template (tool-call arguments as dicts; a malformed
    call is shown as the text the model wrote). A template that cannot render tools gets them as text
    (`render.inline_tools`)."""
    messages, tools = training_messages(prompt, strict=False), prompt.tools or None
    if not renders_tools(tokenizer):
        messages, tools = inline_tools(messages, prompt.tools), None
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class ChatTokens:
    """The token ids of one episode as seen by one side, extended turn by turn.

    ``ids`` always ends with the last token the model sampled (plus an end-of-turn token added
    when the sample was cut at the length limit); `prompt_for` returns the ids to generate from
    next, `record` appends what was sampled.
    """

    def __init__(self, tokenizer: Any, *, render: Renderer | None = None) -> None:
        self.tokenizer = tokenizer
        self.render: Renderer = render or _bound_renderer(tokenizer)
        self.eos_text: str = tokenizer.eos_token
        self.ids: list[int] = []
        self._n: int | None = None  # rendered messages up to and including our last sampled one

    def prompt_for(self, prompt: ChatPrompt) -> list[int]:
        """Token ids of ``prompt`` followed by the generation prompt."""
        text = self.render(prompt, True)
        if self._n is None:
            self.ids = encode(self.tokenizer, text)
            return list(self.ids)
        earlier = ChatPrompt(messages=prompt.messages[: self._n], tools=prompt.tools)
        before = self.render(earlier, False)
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


def _bound_renderer(tokenizer: Any) -> Renderer:
    return lambda prompt, add_generation_prompt: render_text(tokenizer, prompt,
                                                             add_generation_prompt=add_generation_prompt)


def reply_ids(tokenizer: Any, prompt: ChatPrompt, reply: dict[str, Any], *,
              render: Renderer | None = None) -> list[int]:
    """The ids a model writes for ``reply`` in answer to ``prompt``, as a rollout would sample them.

    That is the template's rendering of the turn from the end of the generation prompt through the
    end-of-turn (eos) token: the content or tool calls and the eos, without the role header (part
    of the generation prompt) or anything the template adds after the eos.

    Raises:
        TemplateError: if the turn's rendering does not start with the generation prompt, or the
            template does not close the turn with the tokenizer's eos token.
    """
    render = render or _bound_renderer(tokenizer)
    head = render(prompt, True)
    full = render(ChatPrompt(messages=[*prompt.messages, reply], tools=prompt.tools), False)
    end = full.rfind(tokenizer.eos_token)
    if not full.startswith(head) or end < len(head):
        raise TemplateError(f"the chat template does not render an assistant turn as its generation prompt followed "
                            f"by the reply and {tokenizer.eos_token!r}; its tokens cannot be told from the template's")
    return encode(tokenizer, full[len(head): end + len(tokenizer.eos_token)])


def tokenize_dialogue(tokenizer: Any, prompt: ChatPrompt) -> tuple[list[int], list[int]]:
    """A whole dialogue as token ids and a mask of 1 on exactly the assistant's tokens, built as a rollout builds them.

    Every assistant turn is `reply_ids` (what the policy would have sampled); everything between
    turns is the tokenised delta `ChatTokens.prompt_for` adds. So the ids are the ones a rollout
    that sampled these very turns would hold, and the mask is its ``env_mask``.

    Args:
        tokenizer: A tokenizer with a chat template.
        prompt: The dialogue, e.g. an SFT row (``messages`` and ``tools``); the assistant is the
            side trained (the user model, in a `render.user_chat` rendering).

    Returns:
        ``(ids, mask)``, ending with the last assistant turn's eos token (later messages cannot
        change the loss). Both are empty when the dialogue has no assistant turn.

    Raises:
        TemplateError: if the template is not prefix-stable or does not close turns with eos.
    """
    rendered: dict[tuple[int, bool], str] = {}

    def render(part: ChatPrompt, add_generation_prompt: bool) -> str:  # every part is a prefix of `prompt`
        key = (len(part.messages), add_generation_prompt)
        if key not in rendered:
            rendered[key] = render_text(tokenizer, part, add_generation_prompt=add_generation_prompt)
        return rendered[key]

    tokens = ChatTokens(tokenizer, render=render)
    mask: list[int] = []
    for i, message in enumerate(prompt.messages):
        if message["role"] != "assistant":
            continue
        before = ChatPrompt(messages=prompt.messages[:i], tools=prompt.tools)
        mask += [0] * (len(tokens.prompt_for(before)) - len(mask))
        sampled = reply_ids(tokenizer, before, message, render=render)
        tokens.record(before, sampled)
        mask += [1] * len(sampled)
    return list(tokens.ids), mask


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
