"""GRPO with rollouts on a (vLLM-protocol) server: each step's LoRA adapter is saved and hot-swapped in."""

from __future__ import annotations

from eigendspy.testing.vllm_server import LocalServer
from eigendspy.train.backends.vllm import VLLMServerBackend
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer
from tests.train.grpo_helpers import TASK_IDS, opening_user


def _config(model_dir, tau2_dir, tmp_path, server, **overrides) -> GRPORunConfig:
    """Tiny, fast GRPO on two mock tasks with rollouts on ``server`` (random model: rewards are all 0)."""
    values = dict(model=str(model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                  data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS[:2], num_generations=2, tasks_per_step=1,
                  report_to=[], use_cpu=True, max_new_tokens=8, max_episode_steps=4, max_refill_rounds=0,
                  save_steps=1000, backend="vllm", vllm_url=server.base_url, vllm_model="tiny")
    return GRPORunConfig(**{**values, **overrides})


def test_grpo_rolls_out_on_the_server_with_the_current_adapter(tiny_model_dir, tau2_dir, tmp_path):
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        config = _config(tiny_model_dir, tau2_dir, tmp_path, server, max_steps=2)
        trainer, rollout = build_trainer(config, user=opening_user())
        assert isinstance(rollout.backend, VLLMServerBackend)
        trainer.train()
        # One adapter per step, loaded before that step's rollouts; the previous one unloaded.
        assert sorted(server.adapters) == ["policy-step-1"]
        assert rollout.backend.served_model == "policy-step-1"
        assert (tmp_path / "grpo" / "rollout_adapters" / "step-0" / "adapter_config.json").exists()
        assert (tmp_path / "grpo" / "rollout_adapters" / "step-1" / "adapter_config.json").exists()
        assert all(h["policy_tokens_per_s"] > 0 for h in rollout.history)  # tokens came from the server


def test_overlapped_rollouts_sample_the_next_batch_with_the_previous_adapter(tiny_model_dir, tau2_dir, tmp_path):
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        config = _config(tiny_model_dir, tau2_dir, tmp_path, server, max_steps=3, overlap_rollouts=True)
        trainer, rollout = build_trainer(config, user=opening_user())
        try:
            trainer.train()
        finally:
            rollout.close()
        # Step 0 trains on its own samples; step t >= 1 on the batch sampled during step t-1.
        assert [h["sampled_with"] for h in rollout.history] == ["policy-step-0", "policy-step-0", "policy-step-1"]
    assert "overlap_rollouts needs backend='vllm'" in _error(lambda: GRPORunConfig(
        model="m", output_dir="o", overlap_rollouts=True))


def _error(fn):
    try:
        fn()
    except ValueError as exc:
        return str(exc)
    return ""
