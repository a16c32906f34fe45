"""Multi-turn GRPO under ``accelerate launch`` with two CPU processes (gloo DDP): each rank rolls out and
filters its own groups, advantages are computed over the gathered rewards, one adapter is saved."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("accelerate_grpo_script.py")


def test_two_cpu_processes_run_grpo_steps_together(tiny_model_dir, tau2_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRL_EXPERIMENTAL_SILENCE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(SCRIPT), str(tiny_model_dir), str(tau2_dir / "mock"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = sorted((json.loads(p.read_text()) for p in tmp_path.glob("rank-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 and r["global_step"] == 2 for r in ranks)
    # Unshuffled, rank 0 first gets [always right, always wrong]: it drops both and refills; rank 1 gets the
    # alternating tasks and keeps them. Every rank then trains on informative groups only.
    assert ranks[0]["history"][0]["groups_dropped"] == 2 and ranks[1]["history"][0]["groups_dropped"] == 0
    for rank in ranks:
        for entry in rank["history"]:
            assert sorted(entry["kept_rewards"]) == [0.0] * 4 + [1.0] * 4
        for advantages in rank["advantages"]:
            assert sorted(round(a, 3) for a in advantages) == [-0.866] * 4 + [0.866] * 4
    assert math.isclose(sum(ranks[0]["advantages"][0]), 0.0, abs_tol=1e-4)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
