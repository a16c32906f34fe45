"""Batch geometry: shipped configs fit their budget, impossible ones are refused with their numbers,
the estimate's activation term matches a measurement, and micro-batching changes nothing but memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eigendspy.testing.backend import ScriptedBackend
from eigendspy.train.config_io import load_config
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.geometry import MemoryBudgetExceeded, ModelShape, check_memory, estimate_memory
from eigendspy.train.grpo.run import build_trainer, load_tasks
from eigendspy.train.sft import SFTRunConfig
from tests.train.grpo_helpers import TASK_IDS, trial_script, trial_user

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The config.json fields the estimate reads, for every model a shipped config names (no download in tests).
SHAPES = {
    "Qwen/Qwen2.5-7B-Instruct": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                     num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                     tie_word_embeddings=False, torch_dtype="bfloat16"),
    "Qwen/Qwen2.5-3B-Instruct": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                                     num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                                     tie_word_embeddings=True, torch_dtype="bfloat16"),
}


def _shape(model: str) -> ModelShape:
    assert model in SHAPES, f"a shipped config names {model}: add its config.json sizes to SHAPES"
    return ModelShape.from_config(SHAPES[model])


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_fit_80_gib_per_device(path):
    if path.name.startswith("grpo"):
        config = load_config(path, GRPORunConfig)
        estimate = check_memory(config, _shape(config.model))  # raises when over budget
        assert config.memory_budget_gib == 80 and estimate.fits
        assert estimate.tokens_per_device == config.micro_batch_size * config.max_context_tokens == 4 * 16384
    else:
        config = load_config(path, SFTRunConfig)
        estimate = estimate_memory(_shape(config.model), micro_batch_size=config.per_device_train_batch_size,
                                   context_tokens=config.max_length, lora_r=config.lora.r,
                                   checkpointing=config.activation_checkpointing, budget_gib=80)
        assert estimate.fits, estimate.describe()


def test_a_step_in_one_micro_batch_is_refused_with_its_numbers():
    shipped = load_config(CONFIGS / "grpo.toml", GRPORunConfig)
    config = shipped.model_copy(update={"micro_batch_size": None})  # what grpo.toml shipped before issue 12
    with pytest.raises(MemoryBudgetExceeded) as info:
        check_memory(config, _shape(config.model))
    message = str(info.value)
    assert "micro-batch 32 x 16384 tokens = 524,288 tokens/device: peak ~" in message
    assert "> 80.0 GiB budget (memory_budget_gib=80)" in message
    assert "set micro_batch_size <= 7 (a divisor of 32 episodes per step, e.g. 4)" in message
    too_long = config.model_copy(update={"micro_batch_size": 1, "max_context_tokens": 262144})
    with pytest.raises(MemoryBudgetExceeded, match="even micro_batch_size 1 does not fit: lower max_context_tokens"):
        check_memory(too_long, _shape(config.model))


def test_a_micro_batch_must_divide_the_step():
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide the 8 episodes of a step"):
        GRPORunConfig(model="m", output_dir="o", num_generations=4, tasks_per_step=2, micro_batch_size=3)


def test_build_trainer_refuses_before_loading_the_model(tiny_model_dir, tmp_path):
    config = GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path), memory_budget_gib=0.01)
    with pytest.raises(MemoryBudgetExceeded, match=r"micro-batch 8 x 8192 tokens = 65,536 tokens/device"):
        build_trainer(config)


def _saved_bytes(shape: ModelShape, layers: int, rows: int, tokens: int, checkpointing: bool) -> int:
    """Bytes autograd keeps for backward in one forward of a bf16 Qwen2 + LoRA + TRL's fused head."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    config = Qwen2Config(vocab_size=shape.vocab_size, hidden_size=shape.hidden_size, num_hidden_layers=layers,
                         intermediate_size=shape.intermediate_size, num_attention_heads=shape.num_attention_heads,
                         num_key_value_heads=shape.num_key_value_heads, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in params:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, shape.vocab_size, (rows, tokens))
    mask = torch.ones_like(ids)
    mask[0, -tokens // 4:] = 0  # padded, as GRPO batches are
    labels = ids.masked_fill(mask == 0, -100)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return sum(saved.values())


def test_activation_estimate_matches_what_autograd_keeps():
    # A shape unlike the ones the coefficients were fitted on (hidden 256/512, MLP 1024/2048).
    shape = ModelShape.from_config(dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=3,
                                        num_attention_heads=6, num_key_value_heads=2, vocab_size=2048))
    rows, tokens = 2, 384
    full = _saved_bytes(shape, 3, rows, tokens, checkpointing=False)
    kept = _saved_bytes(shape, 3, rows, tokens, checkpointing=True)
    estimate = {ckpt: estimate_memory(shape, micro_batch_size=rows, context_tokens=tokens, checkpointing=ckpt)
                for ckpt in (False, True)}
    assert estimate[False].activations_gib * 2**30 == pytest.approx(full, rel=0.1)
    # Checkpointed peak: the layer inputs kept in forward plus one layer recomputed in backward.
    assert estimate[True].activations_gib * 2**30 == pytest.approx(kept + full / 3, rel=0.15)


@pytest.fixture()
def config(tiny_model_dir, tau2_dir, tmp_path):
    return GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                         data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS, num_generations=4, tasks_per_step=2,
                         max_steps=1, learning_rate=0.5, report_to=[], use_cpu=True, max_new_tokens=256,
                         lora_r=4, lora_alpha=8, save_steps=1000, concurrency=4)


def _step(config, micro: int | None):
    _, tasks = load_tasks(config)
    trainer, rollout = build_trainer(config.model_copy(update={"micro_batch_size": micro}), user=trial_user(),
                                     capture=True, shuffle_dataset=False, optim="sgd", max_grad_norm=0.0,
                                     bf16=False)
    # Group one: rewards [1, 0, 1, 0]; group two: [1, 1, 1, 0]: different advantages per group.
    script = trial_script(tasks, right=lambda trial: trial in {0, 2, 4, 5, 6})
    rollout.backend = ScriptedBackend(trainer.processing_class, script)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    rows = sorted((tuple(ids[mask.bool()].tolist()), round(float(adv), 5)) for batch in trainer.captured
                  for ids, mask, adv in zip(batch["completion_ids"], batch["completion_mask"], batch["advantages"],
                                            strict=True))
    update = torch.cat([(p.detach() - before[n]).flatten() for n, p in trainer.model.named_parameters()
                        if p.requires_grad])
    return trainer, rollout, rows, update


def test_micro_batches_keep_group_advantages_and_the_update(config):
    whole, whole_rollout, whole_rows, whole_update = _step(config, None)
    micro, micro_rollout, micro_rows, micro_update = _step(config, 2)

    assert [len(b["advantages"]) for b in whole.captured] == [8]
    assert [len(b["advantages"]) for b in micro.captured] == [2, 2, 2, 2]  # 4 accumulated micro-batches ...
    assert len(whole_rollout.history) == len(micro_rollout.history) == 1  # ... of one rollout call
    assert micro.args.gradient_accumulation_steps == micro.args.steps_per_generation == 4
    assert whole_rollout.history[0]["kept_rewards"] == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]
    assert micro_rows == whole_rows and len({adv for _, adv in whole_rows}) == 4  # each episode, same advantage
    # Plain SGD in fp32, no clipping: the update is the gradient, so a wrong loss normaliser would show
    # (measured: 2e-7 relative difference; TRL's default bf16 autocast alone makes it ~3e-3).
    assert whole_update.norm() > 0 and (micro_update - whole_update).norm() < 1e-5 * whole_update.norm()
