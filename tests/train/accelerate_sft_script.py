"""Two SFT steps of the tiny model, run once per process by ``accelerate launch`` (see test_accelerate_smoke.py).

Usage: ``accelerate launch ... accelerate_sft_script.py MODEL_DIR DATA OUTPUT_DIR``, where DATA is an engine run
directory (exported by rank 0) or an export folder holding ``sft_agent/``. Every rank
writes ``OUTPUT_DIR/rank-<i>.json`` (its rank, the world size and parallelism it saw, the step it
reached), so the
test can tell that both processes trained, in one process group, for the same number of steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eigendspy.train.sft import SFTRunConfig, train_sft


def main(model_dir: str, data: str, output_dir: str) -> None:
    import torch.distributed as dist
    from accelerate.state import AcceleratorState

    source = {"dataset": Path(data)} if (Path(data) / "sft_agent").is_dir() else {"run_dir": Path(data)}
    config = SFTRunConfig(model=model_dir, **source, output_dir=Path(output_dir), max_steps=2,
                          per_device_train_batch_size=1, gradient_accumulation_steps=1, learning_rate=1e-3,
                          warmup_steps=0, max_length=None, report_to=[], logging_steps=1, save_steps=2)
    result = train_sft(config)
    rank = dist.get_rank() if dist.is_initialized() else 0
    backend = dist.get_backend() if dist.is_initialized() else None
    report = {"rank": rank, "world_size": result.num_processes, "global_step": result.global_step,
              "final_loss": result.final_loss, "backend": backend,
              "distributed_type": AcceleratorState().distributed_type.value}
    (Path(output_dir) / f"rank-{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:4])
