"""Off-policy rollouts get TRL's truncated importance-sampling correction in the loss; on-policy ones do not.

The ratio is read from the loss path (``EigenGRPOTrainer(capture=True)`` records what ``_compute_loss``
receives) and compared with TRL's formula, ``clamp(exp(logp_train - logp_sample), max=clip)`` per policy
token, computed here from independent forward passes of the trained and the sampling model.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from eigendspy.testing.backend import ScriptedBackend
from eigendspy.train.backends.hf import HFBackend
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer, load_tasks
from eigendspy.train.grpo.trainer import EpisodeRollout
from eigendspy.train.models import load_model
from tests.train.grpo_helpers import TASK_IDS, opening_user, task_script

CLIP = 1.2


@pytest.fixture()
def config(tiny_model_dir, tau2_dir, tmp_path):
    # learning_rate=0: the trained model stays the one that scored the batch, so it can be re-scored here.
    return GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                         data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS, num_generations=2, tasks_per_step=2,
                         max_steps=1, learning_rate=0.0, report_to=[], use_cpu=True, max_new_tokens=12,
                         max_episode_steps=6, max_refill_rounds=0, lora_r=4, lora_alpha=8, save_steps=1000,
                         importance_sampling_mode="token_truncate", importance_sampling_clip_max=CLIP)


def _trainer(config):
    return build_trainer(config, user=opening_user(), backend=None, capture=True, shuffle_dataset=False)


def _lagged(model_dir: str, scale: float = 0.5) -> torch.nn.Module:
    """The policy one update ago: the same base weights, perturbed."""
    model, _ = load_model(model_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale * p.std().nan_to_num(0.02))
    return model.eval()


@torch.no_grad()
def _token_logps(model, used: dict) -> torch.Tensor:
    """Each completion token's log-probability under ``model`` (temperature 1), laid out like the batch."""
    out = torch.zeros(used["completion_ids"].shape)
    for b in range(out.shape[0]):
        prompt = used["prompt_ids"][b][used["prompt_mask"][b].bool()]
        completion = used["completion_ids"][b][used["completion_mask"][b].bool()]
        ids = torch.cat([prompt, completion]).unsqueeze(0)
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
        out[b, :len(completion)] = torch.log_softmax(logits, -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
    return out


def _logged_ratio(trainer) -> list[float]:
    return [h["sampling/importance_sampling_ratio/mean"] for h in trainer.state.log_history
            if "sampling/importance_sampling_ratio/mean" in h]


def _policy_mask(used: dict) -> torch.Tensor:
    return (used["completion_mask"] * used["tool_mask"]).bool()


@pytest.mark.parametrize("micro_batch_size", [None, 2])
def test_lagged_rollouts_are_reweighted_by_trls_truncated_ratio(config, micro_batch_size):
    trainer, rollout = _trainer(config.model_copy(update={"micro_batch_size": micro_batch_size}))
    lagged = _lagged(config.model)
    rollout.backend = HFBackend(lagged, trainer.processing_class)
    trainer.train()

    assert len(trainer.captured) == (1 if micro_batch_size is None else 2)  # 4 episodes, whole or in halves
    raws, ratios = [], []
    for used in trainer.captured:
        mask = _policy_mask(used)
        current = _token_logps(trainer.model.eval(), used)
        sampled = _token_logps(lagged, used)
        # What the loss received: the sampler's logprobs, the trainer's own, and TRL's ratio built from them.
        assert torch.allclose(used["sampling_per_token_logps"][mask], sampled[mask], atol=1e-4)
        assert torch.allclose(used["old_per_token_logps"][mask], current[mask], atol=1e-4)
        raw = torch.exp(current - sampled)
        ratio = used["importance_sampling_ratio"]
        assert torch.allclose(ratio[mask], torch.clamp(raw, max=CLIP)[mask], rtol=1e-3, atol=1e-5)
        assert torch.all(ratio[~mask] == 1)  # padding: no correction
        raws.append(raw[mask])
        ratios.append(ratio[mask])
    raw, ratio = torch.cat(raws), torch.cat(ratios)
    assert raw.numel() > 10 and (raw > CLIP).any() and (raw < 1).any()  # both the clip and the exact ratio ran
    assert (ratio - 1).abs().max() > 0.1
    assert _logged_ratio(trainer) == [pytest.approx(ratio.mean().item(), rel=1e-4)]
    assert not rollout.samples_on_policy(trainer) and trainer.use_vllm is False


def test_environment_tokens_keep_ratio_one_and_scripted_logprobs_are_corrected(config):
    trainer, rollout = _trainer(config.model_copy(update={"max_new_tokens": 256}))
    _, tasks = load_tasks(config)
    rollout.backend = ScriptedBackend(trainer.processing_class, task_script(tasks), logprob=-6.0)
    trainer.train()

    (used,) = trainer.captured
    policy = _policy_mask(used)
    env = used["completion_mask"].bool() & ~used["tool_mask"].bool()
    assert env.any()  # tool results inside the episodes
    current = _token_logps(trainer.model.eval(), used)
    expected = torch.clamp(torch.exp(current + 6.0), max=CLIP)
    ratio = used["importance_sampling_ratio"]
    assert torch.allclose(ratio[policy], expected[policy], rtol=1e-3, atol=1e-5)
    assert (ratio[policy] == CLIP).any() and (ratio[policy] < 1).any()
    assert torch.all(ratio[env] == 1)


def test_in_process_rollouts_from_the_live_weights_are_not_reweighted(config):
    trainer, rollout = _trainer(config)
    trainer.train()

    (used,) = trainer.captured
    assert rollout.samples_on_policy(trainer)
    assert "importance_sampling_ratio" not in used and _logged_ratio(trainer) == []


def test_only_in_process_sampling_from_the_live_model_is_on_policy(config):
    live = object()
    trainer = SimpleNamespace(model=live, accelerator=SimpleNamespace(unwrap_model=lambda model: model))
    domain, tasks = load_tasks(config)

    def on_policy(backend, overlap=False) -> bool:
        rollout = EpisodeRollout(domain, tasks, opening_user(), backend=backend, overlap=overlap)
        return rollout.samples_on_policy(trainer)

    assert on_policy(SimpleNamespace(model=live))
    assert not on_policy(SimpleNamespace(model=live), overlap=True)  # one step old
    assert not on_policy(SimpleNamespace(model=object()))  # another copy of the weights
    assert not on_policy(ScriptedBackend(None, task_script(tasks)))


def test_overlap_without_the_correction_is_refused(config, tmp_path):
    with pytest.raises(ValueError, match="needs importance_sampling_correction"):
        GRPORunConfig(model="m", output_dir="o", backend="vllm", vllm_url="http://x", vllm_model="m",
                      overlap_rollouts=True, importance_sampling_correction=False)
    overlapped = config.model_copy(update={"backend": "vllm", "vllm_url": "http://x", "vllm_model": "m",
                                           "overlap_rollouts": True})
    _, tasks = load_tasks(config)
    backend = ScriptedBackend(load_model(config.model)[1], task_script(tasks))
    with pytest.raises(ValueError, match="vllm_importance_sampling_correction=True"):
        build_trainer(overlapped, user=opening_user(), backend=backend, vllm_importance_sampling_correction=False)
