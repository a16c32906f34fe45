"""Multi-process SFT under ``accelerate launch`` on CPU (gloo), and the shipped accelerate configs.

The DDP run is the real multi-process path (two CPU ranks over gloo, one process group, sharded
batches, one export and one adapter written by rank 0); it takes ~15 s on two cores. FSDP engages
on GPUs only (on CPU accelerate falls back to DDP), so the run of ``configs/accelerate/fsdp.yaml``
skips without CUDA; every shipped config is still parsed and resolved the way ``accelerate launch``
does it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from datasets import load_from_disk
from safetensors.torch import load_file

from tests.train.sft_helpers import make_engine_run

SCRIPT = Path(__file__).with_name("accelerate_sft_script.py")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_engine_run(tmp_path_factory.mktemp("accelerate") / "run")


def _launch(launch_args: list[str], model_dir: Path, run_dir: Path, out: Path, processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if processes > 1:  # two CPU ranks: hide GPUs so the test means the same on every machine
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch_args, "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(SCRIPT), str(model_dir), str(run_dir), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _train_ranks(launch_args: list[str], model_dir: Path, run_dir: Path, out: Path, kind: str,
                     processes: int = 2) -> dict:
    """Launch the ranks, check they trained together (as ``kind``), and return the saved adapter's tensors."""
    _launch(launch_args, model_dir, run_dir, out, processes)
    reports = sorted((json.loads(p.read_text()) for p in out.glob("rank-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == list(range(processes))
    for report in reports:
        assert report["world_size"] == processes and report["global_step"] == 2
        assert report["distributed_type"] == kind
    assert len({r["final_loss"] for r in reports}) == 1  # the logged loss is gathered over ranks
    rows = len(load_from_disk(str(out / "data" / "sft_agent")))  # exported once, by rank 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["epoch"] == 2 * processes / rows  # batch 1 per rank: sharded rows
    return load_file(out / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def ddp_adapter(tiny_model_dir, run_dir, tmp_path_factory):
    return _train_ranks(["--multi_gpu"], tiny_model_dir, run_dir, tmp_path_factory.mktemp("ddp"), "MULTI_CPU")


def test_ddp_two_cpu_processes_train_in_one_group(ddp_adapter):
    assert any(v.abs().sum() > 0 for k, v in ddp_adapter.items() if "lora_B" in k)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP engages on GPUs only (on CPU accelerate runs DDP)")
def test_fsdp_config_on_one_gpu_trains_and_saves_a_whole_adapter(tiny_model_dir, run_dir, ddp_adapter, tmp_path):
    fsdp = _train_ranks(["--config_file", str(CONFIGS / "fsdp.yaml")], tiny_model_dir, run_dir, tmp_path,
                            "FSDP", processes=1)
    assert fsdp.keys() == ddp_adapter.keys()  # gathered to full tensors, not per-rank shards
    assert all(value.shape == ddp_adapter[name].shape for name, value in fsdp.items())


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2"])
def test_accelerate_configs_are_valid_launch_files(name):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "--num_processes", "2", "train.py"])
    args, _, _ = _validate_launch_command(args)
    assert args.num_processes == 2 and args.mixed_precision == "bf16"
    if name == "ddp":
        assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    elif name == "deepspeed_zero2":
        assert args.use_deepspeed and args.zero_stage == 2 and args.offload_optimizer_device == "none"
    else:
        from accelerate.utils import FullyShardedDataParallelPlugin

        assert args.use_fsdp
        env = prepare_multi_gpu_env(args)
        with mock.patch.dict(os.environ, env):  # what each launched process builds its FSDP plugin from
            plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.state_dict_type.name == "FULL_STATE_DICT" and plugin.cpu_ram_efficient_loading
        assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"  # the trainer's own checkpointing is used
