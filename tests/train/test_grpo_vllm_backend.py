"""GRPO with rollouts on a (vLLM-protocol) server: each step's LoRA adapter is saved and hot-swapped in."""

from __future__ import annotations

import socket
import time

import pytest

from eigendspy.core.participants import InfrastructureError
from eigendspy.testing.vllm_server import LocalServer
from eigendspy.train.backends.vllm import VLLMServerBackend
from eigendspy.train.backends.vllm_errors import VLLMAdapterError
from eigendspy.train.grpo.adapters import AdapterPublishError, publish_adapter
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
        completions = [r for r in server.requests if r.path == "/v1/completions"]
        assert completions and {r.status for r in completions} == {200}
        assert {r.model for r in completions} == {"policy-step-0", "policy-step-1"}
        loads = [(r.status, r.model) for r in server.requests if r.path == "/v1/load_lora_adapter"]
        assert loads == [(200, "policy-step-0"), (200, "policy-step-1")]  # once per step


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


# --- readiness ---------------------------------------------------------------------------------
def test_build_trainer_waits_for_the_server_and_gives_up_with_the_reason(tiny_model_dir, tau2_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path), domain="mock",
                           data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS[:2], num_generations=2, tasks_per_step=1,
                           report_to=[], use_cpu=True, backend="vllm", vllm_url=f"http://127.0.0.1:{port}/v1",
                           vllm_model="tiny", vllm_server_timeout=1.5)
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match=f"127.0.0.1:{port} did not answer GET /health.*within 1.5 s"):
        build_trainer(config, user=opening_user())
    assert 1.5 <= time.monotonic() - started < 30  # it waited, boundedly


# --- one adapter per step, loaded by rank 0 only ------------------------------------------------
class _Rank:
    """The part of ``accelerate.Accelerator`` `publish_adapter` uses, for one rank of a pretend DDP run."""

    def __init__(self, main: bool) -> None:
        self.is_main_process = main
        self.barriers = 0

    def wait_for_everyone(self) -> None:
        self.barriers += 1


class _Model:
    def __init__(self, fail: bool = False) -> None:
        self.saved: list[str] = []
        self.fail = fail

    def save_pretrained(self, path: str) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saved.append(path)


def test_only_rank_0_saves_and_loads_the_adapter(tiny_model_dir, tmp_path):
    import peft
    from transformers import AutoModelForCausalLM

    path = str(tmp_path / "step-3")
    peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                        peft.LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(path)
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        main, other = VLLMServerBackend(server.base_url, "tiny"), VLLMServerBackend(server.base_url, "tiny")
        rank1, model1 = _Rank(main=False), _Model()
        assert publish_adapter(rank1, model1, other, str(tmp_path), 3, broadcast=lambda x: [None]) == "policy-step-3"
        assert model1.saved == [] and server.requests == [] and rank1.barriers == 1  # no save, no request
        assert other.served_model == "policy-step-3"

        class _Saves(_Model):
            def save_pretrained(self, p: str) -> None:
                assert p == path  # the step's directory under adapter_dir
                super().save_pretrained(p)

        rank0, model0 = _Rank(main=True), _Saves()
        sent: list[list] = []
        publish_adapter(rank0, model0, main, str(tmp_path), 3, broadcast=lambda x: sent.append(list(x)) or x)
        assert model0.saved == [path] and sent == [[None]] and main.served_model == "policy-step-3"
        assert [(r.path, r.model) for r in server.requests] == [("/v1/load_lora_adapter", "policy-step-3")]


def test_a_failed_load_on_rank_0_stops_every_rank_with_its_message(tiny_model_dir, tmp_path):
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        backend = VLLMServerBackend(server.base_url, "tiny")
        sent: list[list] = []
        with pytest.raises(VLLMAdapterError, match="shared"):  # the dir does not exist: nothing was saved
            publish_adapter(_Rank(main=True), _Model(), backend, str(tmp_path / "nowhere"), 0,
                            broadcast=lambda x: sent.append(list(x)) or x)
        assert "VLLMAdapterError" in sent[0][0] and "HTTP 404" in sent[0][0]  # the other ranks learn why
    with pytest.raises(AdapterPublishError, match="rank 0 could not publish .*HTTP 404"):
        publish_adapter(_Rank(main=False), _Model(), backend, str(tmp_path), 0, broadcast=lambda x: sent[0])
    with pytest.raises(OSError, match="disk full"):
        publish_adapter(_Rank(main=True), _Model(fail=True), backend, str(tmp_path), 1, broadcast=lambda x: x)
