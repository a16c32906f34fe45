"""A rollout backend that answers from Python: for tests, demos and pipeline dry runs.

A random-initialised model never emits a valid tool call, so tests of multi-turn rollouts, masking
and GRPO's group logic script the policy's *text* and let this backend tokenise it exactly like a
model's sample would appear (the text's ids plus the end-of-turn id). It implements the same
`RolloutBackend` protocol as the HF and vLLM backends, so everything downstream is the production
path.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from eigendspy.train.backends.base import Generation, SamplingParams

Script = Callable[[str, random.Random], str]
"""``script(prompt_text, rng) -> completion text`` (without the end-of-turn token)."""


class ScriptedBackend:
    """Answers each prompt with ``script(decoded prompt, rng)``, tokenised, plus the EOS id.

    Args:
        tokenizer: The policy's tokenizer (its EOS token closes every turn).
        script: Chooses the completion text; ``rng`` is seeded from the request's seed, so a
            script may sample among alternatives reproducibly.
        logprob: The log-probability reported for every token (scripted text has no model).
    """

    def __init__(self, tokenizer, script: Script, *, logprob: float = -1.0) -> None:
        self.tokenizer = tokenizer
        self.script = script
        self.logprob = logprob
        self.calls = 0
        self.adapters: list[tuple[str, str]] = []

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        self.calls += 1
        rng = random.Random(params.seed if params.seed is not None else self.calls)
        text = self.script(self.tokenizer.decode(prompt_ids, skip_special_tokens=False), rng)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        truncated = len(ids) + 1 > params.max_new_tokens
        ids = ids[: params.max_new_tokens] if truncated else [*ids, self.tokenizer.eos_token_id]
        return Generation(token_ids=ids, logprobs=[self.logprob] * len(ids),
                          finish_reason="length" if truncated else "stop")

    def load_adapter(self, path: str, name: str) -> None:
        self.adapters.append((name, path))
