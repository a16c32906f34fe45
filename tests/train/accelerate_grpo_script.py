"""Two GRPO steps of the tiny model per process under ``accelerate launch`` (see test_accelerate_grpo.py).

Usage: ``accelerate launch ... accelerate_grpo_script.py MODEL_DIR TAU2_MOCK_DIR OUTPUT_DIR [SERVER_URL]``.
Without a server the policy is scripted (a random model never emits a valid tool call) so groups carry signal;
with one, both ranks sample from that (vLLM-protocol) server, each step's LoRA adapter saved under OUTPUT_DIR
(a directory the server reads: the same filesystem). Every rank writes ``OUTPUT_DIR/rank-<i>.json`` with what
its rollouts and its loss saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer, load_tasks
from tests.train.grpo_helpers import TASK_IDS, opening_user, scripted_backend


def main(model_dir: str, mock_dir: str, output_dir: str, server_url: str | None = None) -> None:
    import torch.distributed as dist

    served = dict(backend="vllm", vllm_url=server_url, vllm_model="tiny", max_new_tokens=8, max_episode_steps=4,
                  max_refill_rounds=0) if server_url else dict(max_new_tokens=256)
    config = GRPORunConfig(model=model_dir, output_dir=output_dir, domain="mock", data_dir=mock_dir, task_ids=TASK_IDS,
                           num_generations=4, tasks_per_step=2, max_steps=2, learning_rate=5e-2, report_to=[],
                           lora_r=4, lora_alpha=8, save_steps=1000, use_cpu=True, **served)
    _, tasks = load_tasks(config)
    trainer, rollout = build_trainer(config, user=opening_user(), capture=True, shuffle_dataset=False)
    if not server_url:
        rollout.backend = scripted_backend(trainer.processing_class, tasks)
    trainer.train()
    trainer.save_model(str(Path(output_dir) / "adapter"))
    rank = dist.get_rank() if dist.is_initialized() else 0
    report = {"rank": rank, "world_size": trainer.accelerator.num_processes, "global_step": trainer.state.global_step,
              "history": [{k: h.get(k) for k in ("groups_run", "groups_dropped", "kept_rewards", "sampled_with",
                                                 "infra_errors")} for h in rollout.history],
              "advantages": [c["advantages"].tolist() for c in trainer.captured]}
    (Path(output_dir) / f"rank-{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:5])
