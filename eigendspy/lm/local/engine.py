"""An embedded, offline ``dspy.LM``: a local Hugging Face causal LM behind a DSPy 3.4 engine.

Why an engine: DSPy 3.4's extension point is the engine pair (sync ``complete(Request) ->
Response`` plus an async engine), passed as ``dspy.LM(model, engine=..., async_engine=...)``;
the outer ``dspy.LM`` keeps owning cache, history, usage accounting and callbacks.

Why grammar-constrained decoding: a 135M-parameter model rarely writes valid JSON on its own.
The engine declares ``supports_response_schema=True``, so ``JSONAdapter`` sends the signature's
JSON schema as ``response_format``; decoding is then masked token by token with xgrammar
(compiled from that schema over the model's tokenizer), so every answer parses and every
``Literal`` field is one of its values. Two further guards make that hold even for a model
that never stops on its own (a random one, or a small one stuck repeating itself):

* JSON is compact (no free whitespace), so the model cannot fill the budget with spaces;
* after ``max_new_tokens`` the engine enters *closing mode* for at most ``close_tokens`` more
  tokens: among the tokens the grammar allows it prefers ``"``, ``]``, ``}``, ``0`` and ``,``,
  which finishes the open string/number/array/object by the shortest route. Such an answer is
  valid JSON but reported with ``finish_reason="length"``.

Without a schema (``ChatAdapter``) the model writes free text. Native tool calls are not
offered (``supports_function_calling=False``): adapters then write tool calls as text/JSON.

Prompts are built and kept inside the context window by :mod:`eigendspy.lm.local.prompt` (when too long,
messages are dropped or cut in the middle; ``provider_data["prompt_truncated"]`` records it).

Why a prefix KV cache (:mod:`eigendspy.lm.local.prefix_cache`; ``prefix_cache=0`` turns it off): a role's calls
share a long instruction/policy prefix, so each call prefills only what follows the longest cached token prefix.

Why its own greedy loop (:mod:`eigendspy.lm.local.decode`; ``greedy_loop=False``: ``model.generate``) over a KV
cache that grows in place (:mod:`eigendspy.lm.local.kv_cache`; ``grow_cache=False``: transformers' layers): on
this CPU batch-1 decoding spent ~30% of each step re-concatenating the cache, and a token the grammar forces
needs no logits. Both give the same greedy token ids as ``model.generate`` over stock layers (tested).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.engines.base import validate_request
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from eigendspy.lm.local.decode import DecodeStats, Generation, croppable, greedy_decode
from eigendspy.lm.local.grammar import BONUS, CLOSERS, GrammarProcessor, compile_schema, new_compiler  # noqa: F401
from eigendspy.lm.local.kv_cache import new_cache
from eigendspy.lm.local.prefix_cache import PrefixCache
from eigendspy.lm.local.prompt import chat_messages, fit_prompt, response_schema
from eigendspy.lm.small_model import bound_schema

logger = logging.getLogger(__name__)

__all__ = ["AsyncLocalEngine", "Generation", "LocalEngine", "chat_messages", "local_lm", "response_schema"]

_LOADED: dict[str, LocalEngine] = {}  # engines rebuilt by load_state, so an LM's two engine records share weights
_LOADED_LOCK = threading.Lock()


class LocalEngine:
    """Sync engine: one local causal LM on CPU (or a given device), one request at a time.

    It owns the weights, the tokenizer, the grammar compiler and a lock that serialises
    ``generate`` (one model, one set of CPU cores: concurrency would only thrash). It does
    not own DSPy's cache, retries, history or callbacks. Copies of the LM share it.

    Args:
        model_dir: A Hugging Face model folder; default the dequantized SmolLM2 cache
            (:func:`eigendspy.lm.local.fetch.dequantized_dir`, converted on first use).
        max_new_tokens: Generation budget when the request sets no ``max_tokens``.
        temperature: Default temperature; 0 means greedy, hence deterministic.
        seed: Sampling seed when the request sets none (call ``i`` uses ``seed + i``).
        close_tokens: Extra tokens closing mode may use to finish a constrained JSON answer.
        context_window: Prompt + generation limit; default the model's ``max_position_embeddings``.
        device: Torch device of the model.
        max_string_chars: Small-model mode: every schema string without ``maxLength`` gets this one.
        max_array_items: Small-model mode: every schema array without ``maxItems`` gets this one
            (both via :func:`eigendspy.lm.small_model.bound_schema`; None leaves schemas as DSPy sent them).
        prefix_cache: Prompts whose KV states later calls sharing a token prefix reuse (`PrefixCache`); 0: off.
        draft_tokens: Prompt-lookup tokens verified per forward in the greedy loop (`decode`; none without it); 3 by
            default (a forward of 4 tokens costs ~1.75x one of 1 on this CPU: `demo-synth`'s calls 1.26x faster).
        grow_cache: KV cache layers that grow in place (`eigendspy.lm.local.kv_cache`); False: transformers' own.
        greedy_loop: Greedy calls without stop strings decode in `decode.greedy_decode` (grammar-forced tokens
            without logits); False, sampling or stop strings: ``model.generate``.
    """

    supports_function_calling = False
    supports_reasoning = False
    supports_response_schema = True
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "stop", "seed", "response_format"})

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        seed: int = 0,
        close_tokens: int = 128,
        context_window: int | None = None,
        device: str = "cpu",
        max_string_chars: int | None = None,
        max_array_items: int | None = None,
        prefix_cache: int = 8,
        draft_tokens: int = 3,
        grow_cache: bool = True,
        greedy_loop: bool = True,
    ) -> None:
        import torch
        import transformers

        if model_dir is None:
            from eigendspy.lm.local.fetch import dequantized_dir

            model_dir = dequantized_dir()
        self.model_dir = Path(model_dir)
        started = time.perf_counter()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_dir)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32)
        self.model.to(device).eval()
        self.load_seconds = time.perf_counter() - started
        config = self.model.config.get_text_config()
        self.vocab_size = int(getattr(config, "vocab_size", None) or len(self.tokenizer))
        self.context_window = context_window or int(getattr(config, "max_position_embeddings", 2048))
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not self.eos_ids:
            raise ValueError(f"{self.model_dir} defines no eos token; generation could not stop")
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.close_tokens, self.device = close_tokens, device
        self.max_string_chars, self.max_array_items = max_string_chars, max_array_items
        self.prefix_cache = PrefixCache(prefix_cache) if prefix_cache > 0 else None
        self.draft_tokens, self.last_decode = draft_tokens, DecodeStats()
        self.grow_cache, self.greedy_loop = grow_cache, greedy_loop
        self._lock = threading.Lock()
        self._calls = itertools.count()
        self._compiler: Any = None
        self._bonus: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LocalEngine:
        return self  # the weights are borrowed, never copied: dspy deep-copies LMs with their programs

    def dump_state(self) -> dict[str, Any]:
        """What ``dspy.LM.dump_state`` saves (a program saved with this LM set reloads it)."""
        names = ("max_new_tokens", "temperature", "seed", "close_tokens", "context_window", "device",
                 "max_string_chars", "max_array_items", "draft_tokens", "grow_cache", "greedy_loop")
        prefix = self.prefix_cache.max_entries if self.prefix_cache is not None else 0
        return {"model_dir": str(self.model_dir), **{n: getattr(self, n) for n in names}, "prefix_cache": prefix}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LocalEngine:
        """Rebuild from :meth:`dump_state`; the sync and async records of one LM share one loaded model."""
        key = json.dumps(state, sort_keys=True)
        with _LOADED_LOCK:
            if key not in _LOADED:
                _LOADED[key] = cls(**state)
            return _LOADED[key]

    # --- prompt -------------------------------------------------------------------------------------------

    def fit_prompt(self, messages: list[dict[str, str]], budget: int) -> tuple[list[int], bool]:
        """Token ids of the rendered prompt cut to ``budget`` tokens: :func:`eigendspy.lm.local.prompt.fit_prompt`.

        Raises:
            ValueError: Even the cut prompt does not fit (budget too small for the template).
        """
        return fit_prompt(self.tokenizer, messages, budget)  # the module function, not this method

    # --- grammar ------------------------------------------------------------------------------------------

    def _grammar(self, schema: dict[str, Any], strict: bool) -> Any:
        if self._compiler is None:
            self._compiler, self._bonus = new_compiler(self.tokenizer, self.vocab_size, self.eos_ids, self.device)
        return compile_schema(self._compiler, schema, strict)

    # --- generation ---------------------------------------------------------------------------------------

    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        response_format: dict[str, Any] | None = None,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stop: tuple[str, ...] = (),
    ) -> Generation:
        """Generate one answer for chat ``messages``: the engine minus the lm15 wrapping, usable without DSPy.

        Args:
            messages: ``[{"role", "content"}]`` with text content.
            response_format: A JSON schema / JSON object format (see :func:`response_schema`) to
                constrain decoding with; None for free text.
            max_new_tokens: Budget; default the engine's. Constrained answers may add closing tokens.
            temperature: 0 decodes greedily; default the engine's.
            top_p: Nucleus sampling when temperature > 0.
            seed: Sampling seed; default ``engine seed + call index``.
            stop: Strings that end a free-text answer (not included in the text).
        """
        import torch
        import transformers

        budget = max_new_tokens or self.max_new_tokens
        temperature = self.temperature if temperature is None else temperature
        target = response_schema(response_format)
        if target and (self.max_string_chars or self.max_array_items):
            target = (bound_schema(target[0], self.max_string_chars or 1 << 20, self.max_array_items or 1 << 20),
                      target[1])
        extra = self.close_tokens if target else 0
        with self._lock:
            call = next(self._calls)
            started = time.perf_counter()
            ids, truncated = self.fit_prompt(messages, self.context_window - budget - extra)
            processor = GrammarProcessor(self._grammar(*target), len(ids), budget, self._bonus) if target else None
            sample = temperature > 0
            options: dict[str, Any] = {"do_sample": sample}
            if sample:
                options.update(temperature=temperature, top_p=top_p if top_p is not None else 1.0, top_k=0)
            pad = self.tokenizer.pad_token_id
            config = transformers.GenerationConfig(
                max_new_tokens=budget + extra,
                eos_token_id=self.eos_ids,
                pad_token_id=pad if pad is not None else self.eos_ids[0],
                stop_strings=list(stop) or None,
                **options,
            )
            inputs = torch.tensor([ids], device=self.device)
            prefix, model_config = self.prefix_cache, self.model.config
            cache, reused = (prefix.start(ids, model_config, grow=self.grow_cache) if prefix is not None
                             else (new_cache(model_config, grow=self.grow_cache), 0))
            # drafts are verified inside the own loop: greedy_loop=False is model.generate, drafts or not
            own_loop = not sample and not stop and self.greedy_loop and croppable(cache)
            with torch.inference_mode(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed if seed is not None else self.seed + call)
                if own_loop:  # greedy: the same tokens as model.generate, fewer forwards (eigendspy.lm.local.decode)
                    new, self.last_decode = greedy_decode(self.model, ids, cache, reused, processor, budget + extra,
                                                          self.eos_ids, self.draft_tokens)
                    out = torch.tensor([ids + new])
                else:
                    out = self.model.generate(
                        input_ids=inputs,
                        attention_mask=torch.ones_like(inputs),
                        generation_config=config,
                        logits_processor=transformers.LogitsProcessorList([processor] if processor else []),
                        tokenizer=self.tokenizer if stop else None,
                        cache=cache,
                    )
            if prefix is not None and not prefix.finish(ids, cache):
                self.prefix_cache = None  # sliding-window or other layers: no reuse for this model
            seconds = time.perf_counter() - started
        new = out[0, len(ids) :].tolist()
        ended = bool(new) and new[-1] in self.eos_ids
        text = self.tokenizer.decode(new[:-1] if ended else new, skip_special_tokens=True)
        hit_stop = False
        for s in stop:
            if s in text:
                text, hit_stop = text.split(s, 1)[0], True
        if processor is not None:
            finished = processor.matcher.is_terminated() or processor.matcher.is_completed()
            finish = "stop" if finished and not processor.closing else "length"
        else:
            finish = "stop" if ended or hit_stop else "length"
        return Generation(text, len(ids), len(new), finish, seconds, truncated, processor is not None, call, reused,
                          tuple(new))

    def complete(self, request: Request) -> Response:
        """Answer one canonical lm15 request (DSPy's engine contract)."""
        validate_request(request)
        if request.tools:
            logger.warning("the local engine offers no native tool calling; ignoring %d tools", len(request.tools))
        cfg = request.config
        result = self.generate(
            chat_messages(request),
            response_format=cfg.response_format,
            max_new_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=cfg.seed,
            stop=tuple(cfg.stop or ()),
        )
        return Response(
            id=f"local-{result.call_index}",
            model=request.model,
            message=Message.assistant([TextPart(result.text)]),
            finish_reason=result.finish_reason,
            usage=Usage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens),
            provider_data={
                "seconds": round(result.seconds, 4),
                "prompt_truncated": result.prompt_truncated,
                "constrained": result.constrained,
                "cached_tokens": result.cached_tokens,
            },
        )

    def stream(self, request: Request):
        """One-shot stream: the whole answer as one delta (local generation is fast to wait for)."""
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncLocalEngine:
    """Async counterpart: runs the sync engine in a worker thread, so the event loop stays free.

    The sync engine's lock keeps generation one-at-a-time; concurrent ``acall``s queue up.
    """

    def __init__(self, sync: LocalEngine) -> None:
        self.sync = sync

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncLocalEngine:
        return self

    def dump_state(self) -> dict[str, Any]:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> AsyncLocalEngine:
        return cls(LocalEngine.load_state(state))

    async def complete(self, request: Request) -> Response:
        return await asyncio.to_thread(self.sync.complete, request)

    async def stream(self, request: Request):
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass


def local_lm(
    model_dir: str | Path | None = None,
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    seed: int = 0,
    close_tokens: int = 128,
    context_window: int | None = None,
    device: str = "cpu",
    max_string_chars: int | None = None,
    max_array_items: int | None = None,
    prefix_cache: int = 8,
    draft_tokens: int = 3,
    grow_cache: bool = True,
    greedy_loop: bool = True,
    model: str | None = None,
    cache: bool = False,
    **kwargs: Any,
) -> dspy.LM:
    """Build the embedded offline LM (SmolLM2-135M-Instruct by default) as a ``dspy.LM``.

    ``lm.engine`` is the :class:`LocalEngine` (weights, tokenizer, ``load_seconds``).

    Example:
        >>> lm = local_lm()  # needs `eigendspy model fetch` once
        >>> with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        ...     dspy.Predict("question -> answer")(question="2+2?")

    Args:
        model_dir: Hugging Face model folder; default the dequantized SmolLM2 cache.
        max_new_tokens: Default generation budget (``dspy.LM``'s ``max_tokens``).
        temperature: 0 (default) decodes greedily: the same request gives the same answer.
        seed: Sampling seed base for temperature > 0.
        close_tokens: Extra tokens allowed to close a constrained JSON answer past the budget.
        context_window: Prompt + generation token limit; default the model's.
        device: Torch device.
        max_string_chars: Bound every unbounded schema string (small-model mode; see `LocalEngine`).
        max_array_items: Bound every unbounded schema array (small-model mode; see `LocalEngine`).
        prefix_cache: Prompts whose KV states are reused by later calls sharing a token prefix; 0: off.
        draft_tokens: Prompt-lookup draft tokens verified per forward in greedy decoding (default 3); 0: off.
        grow_cache: KV cache layers that grow in place instead of concatenating per token (see `LocalEngine`).
        greedy_loop: The engine's own greedy loop (grammar-forced tokens without logits; see `LocalEngine`).
        model: Model string recorded in history; default ``local/<folder name>``.
        cache: DSPy's response cache, off by default: two folders with the same name would
            share entries, and a deterministic local call is cheap to repeat.
        **kwargs: Forwarded to ``dspy.LM`` (e.g. ``callbacks``, ``num_retries``).
    """
    engine = LocalEngine(model_dir, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                         close_tokens=close_tokens, context_window=context_window, device=device,
                         max_string_chars=max_string_chars, max_array_items=max_array_items, prefix_cache=prefix_cache,
                         draft_tokens=draft_tokens, grow_cache=grow_cache, greedy_loop=greedy_loop)
    kwargs.setdefault("num_retries", 0)  # a local failure is deterministic: retrying repeats it
    return dspy.LM(model or f"local/{engine.model_dir.name}", engine=engine, async_engine=AsyncLocalEngine(engine),
                   temperature=temperature, max_tokens=max_new_tokens, cache=cache, **kwargs)
