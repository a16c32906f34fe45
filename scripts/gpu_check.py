"""GPU check: 5 multi-turn GRPO steps of a ~0.5B random-init Qwen2 with HF generation on one GPU.

Runs on a bare GPU machine with no network (see scripts/gpu_check.sh for the carried wheels). It
builds the model and tokenizer locally, runs GRPO on the built-in retail domain (demo tasks, oracle
user), and prints and writes (``$OUT/gpu_check.json``) rollout tokens/s, step time, the share of the
step spent outside generation and the backward pass, and peak GPU memory. A random model earns no
reward, so its groups are all-equal: this measures the machinery's speed, not learning.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eigendspy.testing.tiny_model import build_tiny_model  # noqa: E402

#: ~0.47B parameters (Qwen2.5-0.5B's depth, a smaller vocabulary); the CPU dry run uses the test sizes.
GPU_SIZE = dict(hidden_size=1024, num_layers=24, intermediate_size=5504)


def main() -> None:
    from eigendspy.core.oracle import OracleUser
    from eigendspy.domains import get_domain
    from eigendspy.domains.retail.demo import retail_demo_tasks
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import build_trainer

    out_dir = Path(os.environ.get("OUT", "/tmp/gpu_check"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/eigendspy_gpu_check")
    cuda = torch.cuda.is_available()
    domain = get_domain("retail")
    corpus = [domain.policy, json.dumps(domain.tool_schemas("assistant"), indent=2)]
    # Tokenizer trained on the domain's text (realistic prompt lengths); no GPU: a dry run of the same path.
    model_dir = build_tiny_model(work / "model", vocab_size=8192, extra_corpus=corpus, dtype=torch.bfloat16,
                                 **(GPU_SIZE if cuda else {}))
    tasks = retail_demo_tasks(domain, n=8)
    steps = int(os.environ.get("GPU_CHECK_STEPS", "5"))
    config = GRPORunConfig(model=str(model_dir), output_dir=str(work / "grpo"), domain="retail",
                           num_generations=8, tasks_per_step=2, max_steps=steps, learning_rate=1e-5,
                           max_new_tokens=128, max_episode_steps=8, max_refill_rounds=0, report_to=[],
                           save_steps=10_000, concurrency=16, lora_r=16, lora_alpha=32, max_context_tokens=32768)
    trainer, rollout = build_trainer(config, user=OracleUser(), tasks=tasks, bf16=cuda, logging_steps=1)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    hist = rollout.history
    gen_tokens = rollout.backend.stats["new_tokens"]
    rollout_s = sum(h["rollout_s"] for h in hist)
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "params": n_params,
        "steps": trainer.state.global_step,
        "wall_s": round(wall, 2),
        "step_s": round(wall / max(1, trainer.state.global_step), 2),
        "rollout_s": round(rollout_s, 2),
        "rollout_fraction": round(rollout_s / wall, 3),
        "generated_tokens": gen_tokens,
        "generate_s": round(rollout.backend.stats["generate_s"], 2),
        # rollout time not spent in model.generate: chat templating, tokenising, user, environment, checker
        "non_generation_fraction_of_step": round((rollout_s - rollout.backend.stats["generate_s"]) / wall, 4),
        "generated_tokens_per_s": round(gen_tokens / rollout_s, 1) if rollout_s else None,
        "policy_tokens_per_s": [round(h["policy_tokens_per_s"], 1) for h in hist],
        "episodes_per_s": [round(h["episodes_per_s"], 2) for h in hist],
        "batches": rollout.backend.stats["batches"],
        "mean_batch": round(rollout.backend.stats["requests"] / max(1, rollout.backend.stats["batches"]), 2),
        "requests": rollout.backend.stats["requests"],
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "log": [{k: v for k, v in e.items() if not k.startswith("completions/")} for e in trainer.state.log_history],
    }
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=2))


if __name__ == "__main__":
    main()
