"""A chat model behind a rollout backend, as an orchestrator participant (assistant or user side).

The assistant side is the policy being trained or evaluated: it sees exactly `render.agent_chat`
(the same rendering SFT exports and ``eval`` use) and returns each turn's sampled token ids and
logprobs in the turn's `TokenTrace`, so GRPO trains on the very tokens it sampled. The user side
plays the (fine-tuned) user model with `render.user_chat`; its tokens are context for the policy,
never trained on in GRPO, but the same machinery keeps its prompts cheap and exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from eigendspy.core.messages import Message
from eigendspy.core.participants import TokenTrace, Turn, TurnContext
from eigendspy.core.render import ChatPrompt, side_chat
from eigendspy.train.backends.base import RolloutBackend, SamplingParams
from eigendspy.train.chat_tokens import ChatTokens, parse_completion


class ContextTooLong(RuntimeError):
    """The dialogue no longer fits the model's context: the episode ends as this side's error."""


class ChatModelParticipant:
    """Plays one side of episodes with a tokenizer's chat template and a `RolloutBackend`.

    Args:
        backend: Generates token ids from token ids (HF in process, or a vLLM server).
        tokenizer: The model's tokenizer with its chat template; a template without tool support gets the
            tools inlined as text (`eigendspy.core.render.inline_tools`), as in SFT.
        side: ``"assistant"`` (the policy) or ``"user"`` (a user model).
        sampling: Sampling parameters for every turn.
        instructions: Replaces the default agent instructions (an evolved instruction artifact).
        max_context_tokens: A prompt longer than this ends the episode (as the side's error).

    One participant may serve many concurrent episodes: token state is kept per episode, keyed by
    (task id, trial, seed), and `forget` drops it when the episode is done.
    """

    def __init__(
        self,
        backend: RolloutBackend,
        tokenizer: Any,
        *,
        side: Literal["assistant", "user"] = "assistant",
        sampling: SamplingParams | None = None,
        instructions: str | None = None,
        max_context_tokens: int | None = None,
    ) -> None:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; give it one (any chat template that renders "
                             "each turn as a prefix of the next, e.g. TRL's trl/chat_templates/qwen2_5.jinja)")
        self.backend = backend
        self.tokenizer = tokenizer
        self.side = side
        self.sampling = sampling or SamplingParams()
        self.instructions = instructions
        self.max_context_tokens = max_context_tokens
        self._sessions: dict[tuple[str, int, int], ChatTokens] = {}

    def chat(self, messages: Sequence[Message], ctx: TurnContext) -> ChatPrompt:
        """What this side sees: the one agent-facing (or user-facing) rendering."""
        return side_chat(self.side, messages, ctx, instructions=self.instructions)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Turn:
        key = (ctx.typed_task.id, ctx.trial, ctx.seed)
        tokens = self._sessions.setdefault(key, ChatTokens(self.tokenizer))
        prompt = self.chat(messages, ctx)
        prompt_ids = tokens.prompt_for(prompt)
        if self.max_context_tokens is not None and len(prompt_ids) > self.max_context_tokens:
            raise ContextTooLong(f"prompt of {len(prompt_ids)} tokens exceeds {self.max_context_tokens}")
        params = self.sampling
        if params.seed is not None:
            params = params.model_copy(update={"seed": params.seed + ctx.seed + ctx.step})
        gen = await self.backend.generate(prompt_ids, params)
        tokens.record(prompt, gen.token_ids)
        text = self.tokenizer.decode(gen.token_ids, skip_special_tokens=False)
        text = text.removesuffix(self.tokenizer.eos_token)
        message = parse_completion(text, self.side)
        trace = TokenTrace(prompt_token_ids=prompt_ids, token_ids=list(gen.token_ids), logprobs=list(gen.logprobs),
                           loss_mask=[1] * len(gen.token_ids))
        return Turn(message=message, trace=trace)

    def forget(self, task_id: str, trial: int, seed: int) -> None:
        """Drop the token state of a finished episode."""
        self._sessions.pop((task_id, trial, seed), None)
