"""End to end on the tiny model: engine run -> export -> SFT adapter -> GRPO from that adapter (API and CLI)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from eigendspy.cli import app
from eigendspy.domains import get_domain
from eigendspy.engine.export import export_run
from eigendspy.testing.backend import ScriptedBackend
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.run import build_trainer, load_tasks
from eigendspy.train.sft import train_sft
from tests.train.grpo_helpers import alternating_script, opening_user
from tests.train.sft_helpers import make_engine_run, tiny_config

DOMAIN_OPTIONS = {"num_users": 8, "tasks_per_user": 5}  # the DB the engine run synthesized its tasks in


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    run = make_engine_run(root / "run")
    export_run(run, lambda name: get_domain(name, **DOMAIN_OPTIONS), root / "export")
    result = train_sft(tiny_config(tiny_model_dir, root / "sft", dataset=root / "export"))
    return root, result.adapter_dir


def _grpo_config(tiny_model_dir, root, adapter, **overrides):
    values = dict(model=str(tiny_model_dir), adapter=str(adapter), output_dir=str(root / "grpo"), domain="mock",
                  domain_options=DOMAIN_OPTIONS, tasks=str(root / "export" / "rl_tasks"), num_generations=2,
                  tasks_per_step=2, max_steps=2, learning_rate=5e-2, report_to=[], use_cpu=True,
                  max_new_tokens=256, save_steps=1000)
    values.update(overrides)
    return GRPORunConfig(**values)


def test_grpo_continues_training_the_sft_adapter_on_exported_rl_tasks(tiny_model_dir, sft_adapter):
    root, adapter = sft_adapter
    config = _grpo_config(tiny_model_dir, root, adapter)
    _, tasks = load_tasks(config)
    assert len(tasks) == 4 and all(t.evaluation_criteria.actions for t in tasks.values())
    trainer, rollout = build_trainer(config, user=opening_user(), capture=True)
    rollout.backend = ScriptedBackend(trainer.processing_class, alternating_script(tasks))
    sft_weights = load_file(f"{adapter}/adapter_model.safetensors")
    trainer.train()

    assert trainer.state.global_step == 2 and len(rollout.history) == 2
    assert all(h["kept_rewards"].count(1.0) == h["kept_rewards"].count(0.0) == 2 for h in rollout.history)
    assert all(torch.count_nonzero(c["advantages"]) == 4 for c in trainer.captured)
    trained = {n.replace(".default", ""): p.detach().cpu() for n, p in trainer.model.named_parameters()
               if "lora_" in n}
    assert set(sft_weights) == set(trained)  # GRPO trains the SFT adapter itself, not a new one
    assert any(not torch.equal(trained[n], w) for n, w in sft_weights.items())


def test_cli_train_grpo_runs_from_a_config_file(tiny_model_dir, sft_adapter, tmp_path):
    root, adapter = sft_adapter
    config = _grpo_config(tiny_model_dir, root, adapter, output_dir=str(tmp_path / "cli"), max_steps=1,
                          max_new_tokens=8, max_episode_steps=4, user="oracle")
    path = tmp_path / "grpo.json"
    path.write_text(config.model_dump_json())
    result = CliRunner().invoke(app, ["train", "grpo", "--config", str(path)])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert written["global_step"] == 1 and (tmp_path / "cli" / "adapter" / "adapter_config.json").exists()
    assert written["rollouts"][0]["groups_run"] >= 2


def test_cli_train_grpo_reports_config_errors(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('model = "m"\noutput_dir = "o"\nbackend = "vllm"\n')
    result = CliRunner().invoke(app, ["train", "grpo", "--config", str(path)])
    assert result.exit_code == 2 and "vllm_url" in result.output
