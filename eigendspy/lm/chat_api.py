"""Any chat-completions LM (a LiteLLM id: OpenAI, Anthropic, a vLLM server's chat endpoint...) as a participant.

Why not a DSPy module here: evaluation numbers must be comparable with tau2-bench runs, so the model must
see tau2's prompt forms — `render.agent_chat` (system prompt, OpenAI messages, native tool schemas) or
`render.user_chat` — exactly as a trained checkpoint does in ``eval``, not a DSPy adapter's prompt. The
synthesis roles stay DSPy modules; this is the evaluation-side (and RL-user-side) twin of
`eigendspy.train.policy.ChatModelParticipant` for models behind an API.

Does not own: retries beyond LiteLLM's ``num_retries``, caching, or cost accounting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.participants import InfrastructureError, TurnContext
from eigendspy.core.render import ChatPrompt, side_chat

#: LiteLLM exception class names that mean the provider, not the model, failed.
INFRA_ERRORS = ("APIConnectionError", "Timeout", "RateLimitError", "ServiceUnavailableError", "InternalServerError",
                "APIError", "BadGatewayError")


class ChatAPIParticipant:
    """Plays one side of an episode with ``litellm.acompletion`` and native tool calls.

    Args:
        model: A LiteLLM model id, e.g. ``openai/gpt-4.1-mini`` or ``hosted_vllm/Qwen/Qwen2.5-7B-Instruct``.
        side: ``"assistant"`` or ``"user"``.
        temperature: Sampling temperature (0 for evaluation).
        max_tokens: Per-turn token limit (None: the provider's default).
        api_base: Endpoint of an OpenAI-compatible server.
        instructions: Replaces the default agent instructions (an evolved instruction artifact).
        timeout: Seconds to wait for the whole answer (LiteLLM's own default is 600 s, long enough
            for a hung server to stall an evaluation for minutes per turn).
        completion_kwargs: Extra keyword arguments for ``litellm.acompletion`` (e.g. ``mock_response``);
            they win over the arguments above.
    """

    def __init__(self, model: str, *, side: Literal["assistant", "user"] = "assistant", temperature: float = 0.0,
                 max_tokens: int | None = None, api_base: str | None = None, instructions: str | None = None,
                 num_retries: int = 3, timeout: float = 60.0,
                 completion_kwargs: dict[str, Any] | None = None) -> None:
        if not model or "/" not in model:
            raise ValueError(f"expected a LiteLLM model id such as 'openai/gpt-4.1-mini'; got {model!r}")
        self.model = model
        self.side = side
        self.instructions = instructions
        self.kwargs: dict[str, Any] = {"temperature": temperature, "num_retries": num_retries, "timeout": timeout,
                                       **({"max_tokens": max_tokens} if max_tokens else {}),
                                       **({"api_base": api_base} if api_base else {}), **(completion_kwargs or {})}

    def chat(self, messages: Sequence[Message], ctx: TurnContext) -> ChatPrompt:
        """What this side sees: the one agent-facing (or user-facing) rendering."""
        return side_chat(self.side, messages, ctx, instructions=self.instructions)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        import litellm

        prompt = self.chat(messages, ctx)
        try:
            response = await litellm.acompletion(model=self.model, messages=prompt.messages,
                                                 tools=prompt.tools or None, **self.kwargs)
        except Exception as exc:
            if type(exc).__name__ in INFRA_ERRORS:
                raise InfrastructureError(f"{self.model}: {type(exc).__name__}: {exc}") from exc
            raise
        return to_message(response.choices[0].message, self.side)


def to_message(message: Any, role: str) -> Message:
    """An OpenAI-style response message -> a tau2 message (tool calls win over text, as tau2's contract says).

    Arguments that are not a JSON object stay the raw string, so the environment answers with an error.
    """
    calls = getattr(message, "tool_calls", None) or []
    if not calls:
        return Message(role=role, content=(getattr(message, "content", None) or "").strip())
    out = []
    for i, call in enumerate(calls):
        raw = call.function.arguments or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            args = raw
        out.append(ToolCall(id=call.id or f"call_{i}", name=call.function.name or "invalid_tool_call",
                            arguments=args if isinstance(args, dict) else str(raw), requestor=role))
    return Message(role=role, content=None, tool_calls=out)
