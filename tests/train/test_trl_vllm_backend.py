"""TRL's vLLM integration as a rollout backend, against doubles with TRL 1.16's signatures (vLLM needs a GPU).

What is checked: the exact calls (token-id prompts, ``n=1``, logprobs requested, the sampling settings),
result parsing, error classes, colocated batching, and a GRPO run through TRL's own ``use_vllm`` path
(``build_trainer`` with ``backend='trl-vllm'``): weights pushed before each step's rollouts and TRL's
importance-sampling correction applied to the logprobs vLLM returned.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math

import pytest
import torch

from eigendspy.core.participants import InfrastructureError
from eigendspy.testing.trl_vllm import FakeVLLMClient, FakeVLLMGeneration, scripted_responder
from eigendspy.train.backends.base import RolloutBackend, SamplingParams
from eigendspy.train.backends.trl_vllm import TRLVLLMBackend
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer, grpo_args, load_tasks
from eigendspy.train.models import load_tokenizer
from tests.train.grpo_helpers import TASK_IDS, opening_user, task_script

EOS = 2


def _respond(prompt_ids, max_tokens):
    ids = [len(prompt_ids) % 50 + 10, 11, 12, EOS][:max_tokens]
    return ids, [-0.5 - i for i in range(len(ids))]


def _generation(mode="server", **settings) -> FakeVLLMGeneration:
    return FakeVLLMGeneration(_respond, **{"model": None, "accelerator": None, "processing_class": None, **settings},
                              mode=mode)


def _shape(fn) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def test_doubles_have_trls_signatures():
    from trl.generation.vllm_client import VLLMClient
    from trl.generation.vllm_generation import VLLMGeneration

    for name in ("generate", "get_server_info", "reset_prefix_cache"):
        assert _shape(getattr(FakeVLLMClient, name)) == _shape(getattr(VLLMClient, name)), name
    for name in ("generate", "sync_weights"):
        assert _shape(getattr(FakeVLLMGeneration, name)) == _shape(getattr(VLLMGeneration, name)), name
    fake_init = _shape(FakeVLLMGeneration.__init__)
    assert fake_init[:1] + fake_init[2:] == _shape(VLLMGeneration.__init__)  # plus `respond`


def test_server_mode_sends_one_token_id_prompt_per_turn_with_logprobs():
    generation = _generation(top_k=5, min_p=0.1, repetition_penalty=1.1, generation_kwargs={"presence_penalty": 0.2})
    backend = TRLVLLMBackend(generation)
    assert isinstance(backend, RolloutBackend)
    params = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=3, seed=7)

    async def turns():
        return await asyncio.gather(backend.generate([1, 2, 3], params), backend.generate([4, 5, 6, 7], params))

    first, second = asyncio.run(turns())
    calls = generation.vllm_client.calls
    assert calls[0] == dict(prompts=[[1, 2, 3]], features=None, n=1, repetition_penalty=1.1, temperature=1.0,
                            top_p=0.9, top_k=5, min_p=0.1, max_tokens=3, logprobs=0, structured_outputs_regex=None,
                            generation_kwargs={"presence_penalty": 0.2, "seed": 7})
    assert [c["prompts"] for c in calls] == [[[1, 2, 3]], [[4, 5, 6, 7]]]
    assert first.token_ids == [13, 11, 12] and first.logprobs == [-0.5, -1.5, -2.5]
    assert first.finish_reason == "length" and second.token_ids == [14, 11, 12]


def test_results_parse_eos_stop_tokens_and_missing_logprobs():
    class Tokenizer:
        eos_token_id = EOS

    generation = _generation(processing_class=Tokenizer())
    generation.vllm_client.respond = lambda p, n: ([5, EOS], [None, -0.25])
    gen = asyncio.run(TRLVLLMBackend(generation).generate([1], SamplingParams(max_new_tokens=2)))
    assert gen.token_ids == [5, EOS] and gen.finish_reason == "stop"
    assert math.isnan(gen.logprobs[0]) and gen.logprobs[1] == -0.25  # vLLM's None: TRL gives it ratio 1
    stop = SamplingParams(max_new_tokens=2, stop_token_ids=(7,))
    generation.vllm_client.respond = lambda p, n: ([5, 7], [-1.0, -1.0])
    assert asyncio.run(TRLVLLMBackend(generation).generate([1], stop)).finish_reason == "stop"
    assert generation.vllm_client.calls[-1]["generation_kwargs"] == {"stop_token_ids": [7]}


def test_server_failures_are_infrastructure_errors_and_refusals_are_not():
    generation = _generation()
    backend = TRLVLLMBackend(generation)
    for error, expected in [(ConnectionError("refused"), InfrastructureError),
                            (Exception("Request failed: 503, busy"), InfrastructureError),
                            (Exception("Request failed: 400, bad max_tokens"), Exception)]:
        def fail(*_args, error=error, **_kwargs):
            raise error
        generation.vllm_client.generate = fail
        with pytest.raises(expected) as info:
            asyncio.run(backend.generate([1], SamplingParams()))
        assert (info.type is InfrastructureError) == (expected is InfrastructureError)


def test_sampling_must_match_what_the_trainer_scores():
    backend = TRLVLLMBackend(_generation(temperature=0.7))
    with pytest.raises(ValueError, match="temperature 1.0 but the trainer scores tokens at 0.7"):
        asyncio.run(backend.generate([1], SamplingParams(temperature=1.0)))
    colocated = TRLVLLMBackend(_generation("colocate", max_completion_length=16))
    with pytest.raises(ValueError, match="max_new_tokens"):
        asyncio.run(colocated.generate([1], SamplingParams(max_new_tokens=8)))
    with pytest.raises(ValueError, match="tensor_parallel_size=1"):
        TRLVLLMBackend(_generation("colocate", tensor_parallel_size=2))
    with pytest.raises(ValueError, match="sleep_mode"):
        TRLVLLMBackend(_generation("colocate", enable_sleep_mode=True))
    with pytest.raises(RuntimeError, match="pushes the trained weights"):
        backend.load_adapter("/tmp/a", "step-1")


def test_colocate_mode_fuses_concurrent_turns_into_one_engine_call():
    generation = _generation("colocate", max_completion_length=3)
    backend = TRLVLLMBackend(generation, batch_window_s=0.01)
    params = SamplingParams(max_new_tokens=3)

    async def turns():
        return await asyncio.gather(*(backend.generate(list(range(n)), params) for n in (1, 2, 3)))

    outs = asyncio.run(turns())
    assert generation.generate_calls == [dict(prompts=[[0], [0, 1], [0, 1, 2]], images=None, num_generations=1)]
    assert [o.token_ids[0] for o in outs] == [11, 12, 13] and outs[0].logprobs == [-0.5, -1.5, -2.5]


def test_other_ranks_open_a_client_of_their_own_to_the_same_server(monkeypatch):
    opened = []

    class Client(FakeVLLMClient):
        def __init__(self, **kwargs):
            super().__init__(_respond)
            opened.append(kwargs)

    monkeypatch.setattr("trl.generation.vllm_client.VLLMClient", Client)
    generation = _generation(server_host="10.0.0.5", server_port=8123)
    del generation.vllm_client  # TRL builds its client on the main process only
    backend = TRLVLLMBackend(generation)
    asyncio.run(backend.generate([1], SamplingParams()))
    assert opened == [dict(base_url="http://10.0.0.5:8123", group_port=51216, connection_timeout=240.0)]
    assert len(backend.client.calls) == 1


def test_config_maps_to_trls_vllm_arguments(tmp_path):
    config = GRPORunConfig(model="m", output_dir=str(tmp_path), backend="trl-vllm", vllm_mode="colocate",
                           vllm_gpu_memory_utilization=0.4, max_context_tokens=1000, max_new_tokens=24,
                           importance_sampling_clip_max=2.0, report_to=[], use_cpu=True)
    args = grpo_args(config)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.vllm_max_model_length) == (
        True, "colocate", 0.4, 1024)
    assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode,
            args.vllm_importance_sampling_clip_max) == (True, "token_truncate", 2.0)
    assert grpo_args(config.model_copy(update={"backend": "hf"})).use_vllm is False
    with pytest.raises(ValueError, match="overlap_rollouts needs backend='vllm'"):
        GRPORunConfig(model="m", output_dir="o", backend="trl-vllm", overlap_rollouts=True)


def test_grpo_through_trls_vllm_path_syncs_before_each_rollout_and_corrects(tiny_model_dir, tau2_dir, tmp_path,
                                                                              monkeypatch):
    import trl.trainer.grpo_trainer as grpo_trainer

    config = GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                           data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS, num_generations=2, tasks_per_step=2,
                           max_steps=2, report_to=[], use_cpu=True, max_new_tokens=256, max_episode_steps=6,
                           max_refill_rounds=0, lora_r=4, lora_alpha=8, save_steps=1000, backend="trl-vllm",
                           vllm_server_port=8123, importance_sampling_clip_max=2.0)
    _, tasks = load_tasks(config)
    respond = scripted_responder(load_tokenizer(config.model), task_script(tasks), logprob=-6.0)
    monkeypatch.setattr(grpo_trainer, "VLLMGeneration", functools.partial(FakeVLLMGeneration, respond))
    trainer, rollout = build_trainer(config, user=opening_user(), capture=True, shuffle_dataset=False)
    generation = trainer.vllm_generation
    assert isinstance(rollout.backend, TRLVLLMBackend) and rollout.backend.generation is generation
    assert (generation.mode, generation.server_host, generation.server_port) == ("server", "127.0.0.1", 8123)
    # As rank 0 of two: every rank must wait for the weight push before sampling from the shared server.
    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda _: 2))
    monkeypatch.setattr(trainer.accelerator, "wait_for_everyone", lambda: generation.events.append(("barrier", 0)))
    trainer.train()

    # TRL pushed the weights before each step's rollouts; every turn was one token-id prompt with logprobs.
    steps = [e for e in generation.events if e[0] != "generate"]
    assert steps == [("sync_weights", 1), ("barrier", 0), ("sync_weights", 2), ("barrier", 0)]
    assert generation.events[:2] == [("sync_weights", 1), ("barrier", 0)]
    second = generation.events.index(("sync_weights", 2))
    assert ("generate", 1) in generation.events[2:second] and generation.events[second + 1] == ("barrier", 0)
    calls = generation.vllm_client.calls
    assert all(c["n"] == 1 and c["logprobs"] == 0 and len(c["prompts"]) == 1 for c in calls)
    assert all(isinstance(t, int) for c in calls for t in c["prompts"][0])
    # TRL's own use_vllm branch applied the correction to the logprobs the (fake) vLLM returned.
    assert len(trainer.captured) == 2
    for used in trainer.captured:
        policy = (used["completion_mask"] * used["tool_mask"]).bool()
        assert policy.any() and (used["importance_sampling_ratio"][policy] != 1).any()
        expected = torch.clamp(torch.exp(used["old_per_token_logps"] + 6.0), max=2.0)
        assert torch.allclose(used["importance_sampling_ratio"][policy], expected[policy])
        assert torch.all(used["sampling_per_token_logps"][policy] == -6.0)
