"""Batch geometry of a GRPO step, and a memory estimate that refuses a micro-batch that cannot fit.

A step trains on ``num_generations x tasks_per_step`` episodes per process. They are sampled and
scored together (one ``rollout_func`` call: TRL's group-relative advantages need whole groups),
then split into micro-batches of ``micro_batch_size`` for the forward/backward passes, with gradient
accumulation over ``episodes / micro_batch_size`` of them: TRL's ``steps_per_generation`` and
``gradient_accumulation_steps``. The memory a step needs is set by the micro-batch, not the step.

The estimate (an estimate: it says whether a config is plausible, not that it will run) counts, for
one micro-batch of ``m`` episodes padded to ``T = max_context_tokens`` tokens (TRL pads a
micro-batch to its longest row; the worst case is every row at the context limit), in a model with
hidden size ``h``, MLP size ``I``, ``L`` layers, key/value width ``kv`` (KV heads x head dim) and
``b`` bytes per element:

* weights: the parameter count from the config, times ``b``;
* LoRA state: adapter parameters x 16 bytes (fp32 weight, gradient, Adam's two moments);
* activations kept for backward, per token and layer ``a = b (18 h + 5 I + 2 kv + 4 head_dim)``
  and ``3 T^2`` bytes per row for the padding mask SDPA keeps per layer. Both were measured on CPU
  with saved-tensor hooks on a bf16 Qwen2 with LoRA on every linear and TRL's fused LM head
  (``tests/train/test_geometry.py`` re-measures them); GPU attention kernels may keep less. With
  gradient checkpointing only each layer's input (``h b`` per token and layer) is kept, plus one
  layer's ``a`` and mask while it is recomputed in backward;
* per token outside the layers: ``2 h b + 32`` bytes (final hidden states, fp32 log-softmax stats);
* the LM head: TRL 1.16 never materialises ``[tokens, vocab]`` logits (its fused head works on
  4096-token x 32768-vocab tiles), so logits cost one fp32 tile, not ``m T V``;
* 2 GiB of overhead (CUDA context, cuBLAS workspace, allocator fragmentation), a guess.

Rollouts with the in-process ``hf`` backend are a separate phase: weights plus a KV cache of
``concurrency`` episodes at ``T`` tokens (``2 L kv b`` bytes per token). The peak is the larger of
the two phases. Not counted: full fine-tuning, FSDP/DeepSpeed sharding, a vLLM server's memory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from eigendspy.train.grpo.config import GRPORunConfig

logger = logging.getLogger(__name__)

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
LORA_STATE_BYTES = 16  # fp32 weight + gradient + Adam m and v
OVERHEAD_GIB = 2.0
HEAD_TILE = (4096, 32768)  # trl.kernels.chunked_logprob: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE


class MemoryBudgetExceeded(ValueError):
    """The configured micro-batch cannot fit the stated memory budget, by the estimate's arithmetic."""


class ModelShape(BaseModel):
    """The sizes of a decoder-only transformer that the memory estimate needs (from its config.json)."""

    model_config = ConfigDict(frozen=True)

    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool = False
    dtype_bytes: int = 2
    max_position_embeddings: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """From a ``config.json`` dict (Qwen2/Llama/Mistral field names)."""
        heads = config["num_attention_heads"]
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16").removeprefix("torch.")
        return cls(hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"],
                   intermediate_size=config["intermediate_size"], vocab_size=config["vocab_size"],
                   num_attention_heads=heads, num_key_value_heads=config.get("num_key_value_heads") or heads,
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                   dtype_bytes=DTYPE_BYTES.get(dtype, 2),
                   max_position_embeddings=config.get("max_position_embeddings"))

    @classmethod
    def load(cls, model: str) -> ModelShape:
        """From a local model folder's ``config.json``, else through ``transformers`` (the hub cache)."""
        local = Path(model).expanduser() / "config.json"
        if local.is_file():
            return cls.from_config(json.loads(local.read_text()))
        from transformers import AutoConfig

        return cls.from_config(AutoConfig.from_pretrained(model).to_dict())

    @property
    def kv_width(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer in one decoder layer: q, k, v, o, gate, up, down."""
        h, q, kv, i = self.hidden_size, self.num_attention_heads * self.head_dim, self.kv_width, self.intermediate_size
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    @property
    def num_params(self) -> int:
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return embeddings + self.num_layers * sum(a * b for a, b in self.linear_shapes)

    def lora_params(self, r: int) -> int:
        """Adapter parameters with rank ``r`` on every linear layer (``all-linear``, the output head excepted)."""
        return self.num_layers * sum(r * (a + b) for a, b in self.linear_shapes)

    @property
    def activation_bytes_per_token_layer(self) -> int:
        """``a``: what one layer keeps for backward per token (see the module docstring)."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.kv_width
        return self.dtype_bytes * (18 * h + 5 * i + 2 * kv + 4 * self.head_dim)


class MemoryEstimate(BaseModel):
    """Estimated peak memory of one process, in GiB, and whether it fits ``budget_gib``."""

    micro_batch_size: int
    context_tokens: int
    weights_gib: float
    lora_state_gib: float
    activations_gib: float
    lm_head_gib: float
    overhead_gib: float
    generation_gib: float = 0.0
    budget_gib: float | None = None

    @property
    def tokens_per_device(self) -> int:
        return self.micro_batch_size * self.context_tokens

    @property
    def training_gib(self) -> float:
        return self.weights_gib + self.lora_state_gib + self.activations_gib + self.lm_head_gib + self.overhead_gib

    @property
    def total_gib(self) -> float:
        return max(self.training_gib, self.generation_gib)

    @property
    def fits(self) -> bool:
        return self.budget_gib is None or self.total_gib <= self.budget_gib

    def describe(self) -> str:
        generation = f"; generating ~{self.generation_gib:.1f}" if self.generation_gib else ""
        return (f"micro-batch {self.micro_batch_size} x {self.context_tokens} tokens = {self.tokens_per_device:,} "
                f"tokens/device: peak ~{self.total_gib:.1f} GiB (training ~{self.training_gib:.1f}: weights "
                f"{self.weights_gib:.1f}, activations {self.activations_gib:.1f}, LoRA+Adam {self.lora_state_gib:.1f}, "
                f"LM-head tiles {self.lm_head_gib:.1f}, overhead {self.overhead_gib:.1f}{generation})")


def estimate_memory(
    shape: ModelShape,
    *,
    micro_batch_size: int,
    context_tokens: int,
    lora_r: int = 16,
    checkpointing: bool = True,
    generation_concurrency: int = 0,
    budget_gib: float | None = None,
) -> MemoryEstimate:
    """Estimate one process's peak memory for a LoRA training micro-batch (formula: the module docstring).

    Args:
        shape: The model's sizes.
        micro_batch_size: Rows per forward/backward pass.
        context_tokens: Tokens per row (the worst case: ``max_context_tokens``).
        lora_r: Adapter rank (on every linear layer).
        checkpointing: Gradient (activation) checkpointing on.
        generation_concurrency: Episodes generated at once in this process (in-process backend), 0: none.
        budget_gib: The memory the process may use; ``None``: no verdict.
    """
    m, t, b, L = micro_batch_size, context_tokens, shape.dtype_bytes, shape.num_layers
    per_layer = m * t * shape.activation_bytes_per_token_layer + m * 3 * t * t
    kept = L * m * t * shape.hidden_size * b + per_layer if checkpointing else L * per_layer
    outside = m * t * (2 * shape.hidden_size * b + 32)
    tile = min(HEAD_TILE[0], m * t) * min(HEAD_TILE[1], shape.vocab_size) * 4
    generation = 0.0
    if generation_concurrency:
        kv_cache = generation_concurrency * t * 2 * L * shape.kv_width * b
        generation = (shape.num_params * b + kv_cache) / GIB + OVERHEAD_GIB
    return MemoryEstimate(micro_batch_size=m, context_tokens=t, weights_gib=shape.num_params * b / GIB,
                          lora_state_gib=shape.lora_params(lora_r) * LORA_STATE_BYTES / GIB,
                          activations_gib=(kept + outside) / GIB, lm_head_gib=tile / GIB, overhead_gib=OVERHEAD_GIB,
                          generation_gib=generation, budget_gib=budget_gib)


def check_memory(config: GRPORunConfig, shape: ModelShape | None = None) -> MemoryEstimate | None:
    """Refuse a config whose micro-batch cannot fit ``memory_budget_gib``, with its numbers and a fix.

    Args:
        config: The run; its ``model`` names the shape when ``shape`` is not given.
        shape: The model's sizes (default: read from the model's ``config.json``).

    Returns:
        The estimate, or ``None`` when there is no budget or the model's config cannot be read.

    Raises:
        MemoryBudgetExceeded: The estimate is over budget; the message names the numbers and the
            largest micro-batch that fits.
    """
    if config.memory_budget_gib is None:
        return None
    if shape is None:
        try:
            shape = ModelShape.load(config.model)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("memory check skipped: cannot read %s's config (%s)", config.model, exc)
            return None
    tokens = config.max_context_tokens or shape.max_position_embeddings
    if tokens is None:
        return None
    budget = config.memory_budget_gib
    colocated = config.backend == "trl-vllm" and config.vllm_mode == "colocate"
    if colocated:  # vLLM takes its share of the same GPU
        budget *= 1 - config.vllm_gpu_memory_utilization

    def at(micro: int) -> MemoryEstimate:
        return estimate_memory(shape, micro_batch_size=micro, context_tokens=tokens, lora_r=config.lora_r,
                               checkpointing=config.activation_checkpointing,
                               generation_concurrency=config.concurrency if config.backend == "hf" else 0,
                               budget_gib=budget)

    estimate = at(config.episodes_per_micro_batch)
    if estimate.fits:
        return estimate
    fitting = [m for m in range(1, config.episodes_per_micro_batch) if at(m).fits]
    if at(1).training_gib > budget:
        fix = ("even micro_batch_size 1 does not fit: lower max_context_tokens"
               + ("" if config.activation_checkpointing else ", turn activation_checkpointing on")
               + " or use a smaller model")
    elif not fitting:
        fix = f"generation needs ~{estimate.generation_gib:.1f} GiB: lower concurrency or max_context_tokens"
    else:
        step = config.num_generations * config.tasks_per_step
        ok = max(d for d in range(1, fitting[-1] + 1) if step % d == 0)
        fix = f"set micro_batch_size <= {fitting[-1]} (a divisor of {step} episodes per step, e.g. {ok})"
    stated = f"{budget:.1f} GiB budget (memory_budget_gib={config.memory_budget_gib:g}" + (
        f" less vLLM's colocated {config.vllm_gpu_memory_utilization:g})" if colocated else ")")
    raise MemoryBudgetExceeded(f"{estimate.describe()} > {stated}; {fix}. This is an estimate "
                               "(eigendspy.train.grpo.geometry documents it).")
