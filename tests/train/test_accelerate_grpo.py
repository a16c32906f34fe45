"""Multi-turn GRPO under ``accelerate launch`` with two CPU processes (gloo DDP): each rank rolls out and
filters its own groups, advantages are computed over the gathered rewards, one adapter is saved; with a shared
rollout server, each step's adapter is loaded once (by rank 0) and no rank's request ever misses it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from eigendspy.testing.vllm_server import LocalServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("accelerate_grpo_script.py")


def launch_two_ranks(*args: str) -> list[dict]:
    """Run the script on two CPU ranks; returns their reports, rank 0 first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRL_EXPERIMENTAL_SILENCE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(SCRIPT), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return sorted((json.loads(p.read_text()) for p in Path(args[2]).glob("rank-*.json")), key=lambda r: r["rank"])


def test_two_cpu_processes_run_grpo_steps_together(tiny_model_dir, tau2_dir, tmp_path):
    ranks = launch_two_ranks(str(tiny_model_dir), str(tau2_dir / "mock"), str(tmp_path))
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


def test_two_ranks_share_one_server_and_never_miss_the_adapter(tiny_model_dir, tau2_dir, tmp_path):
    with LocalServer(tiny_model_dir, served_model_name="tiny") as server:
        ranks = launch_two_ranks(str(tiny_model_dir), str(tau2_dir / "mock"), str(tmp_path), server.base_url)
        requests = list(server.requests)
    assert [r["global_step"] for r in ranks] == [2, 2]
    completions = [r for r in requests if r.path == "/v1/completions"]
    assert len(completions) >= 2 * 2 * 8  # 2 ranks x 2 steps x 8 episodes, each at least one turn
    assert [r for r in requests if r.status == 404] == []  # no request named an adapter another rank unloaded
    assert {r.status for r in requests} == {200}
    # Each step's adapter loaded once (by rank 0), the previous one unloaded once; both ranks sampled from it.
    assert [(r.path, r.model) for r in requests if "lora" in r.path] == [
        ("/v1/load_lora_adapter", "policy-step-0"), ("/v1/load_lora_adapter", "policy-step-1"),
        ("/v1/unload_lora_adapter", "policy-step-0")]
    assert {r.model for r in completions} == {"policy-step-0", "policy-step-1"}
    for rank in ranks:
        assert [h["sampled_with"] for h in rank["history"]] == ["policy-step-0", "policy-step-1"]
        assert all(h["infra_errors"] in (0, None) for h in rank["history"])
    assert (tmp_path / "rollout_adapters" / "step-1" / "adapter_config.json").exists()
