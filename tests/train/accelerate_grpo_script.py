"""Two GRPO steps of the tiny model per process under ``accelerate launch`` (see test_accelerate_grpo.py).

Usage: ``accelerate launch ... accelerate_grpo_script.py MODEL_DIR TAU2_MOCK_DIR OUTPUT_DIR``. The policy is
scripted (a random model never emits a valid tool call) so groups carry signal; every rank writes
``OUTPUT_DIR/rank-<i>.json`` with what its rollouts and its loss saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer, load_tasks
from tests.train.grpo_helpers import TASK_IDS, opening_user, scripted_backend


def main(model_dir: str, mock_dir: str, output_dir: str) -> None:
    import torch.distributed as dist

    config = GRPORunConfig(model=model_dir, output_dir=output_dir, domain="mock", data_dir=mock_dir, task_ids=TASK_IDS,
                           num_generations=4, tasks_per_step=2, max_steps=2, learning_rate=5e-2, report_to=[],
                           max_new_tokens=256, lora_r=4, lora_alpha=8, save_steps=1000, use_cpu=True)
    _, tasks = load_tasks(config)
    trainer, rollout = build_trainer(config, user=opening_user(), capture=True, shuffle_dataset=False)
    rollout.backend = scripted_backend(trainer.processing_class, tasks)
    trainer.train()
    trainer.save_model(str(Path(output_dir) / "adapter"))
    rank = dist.get_rank() if dist.is_initialized() else 0
    report = {"rank": rank, "world_size": trainer.accelerator.num_processes, "global_step": trainer.state.global_step,
              "history": [{k: h[k] for k in ("groups_run", "groups_dropped", "kept_rewards")} for h in rollout.history],
              "advantages": [c["advantages"].tolist() for c in trainer.captured]}
    (Path(output_dir) / f"rank-{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
