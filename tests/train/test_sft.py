"""LoRA SFT of the agent and the user model: templates, assistant-only labels, adapter-only changes, resume, CLI."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from datasets import load_from_disk
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from eigendspy.domains import get_domain
from eigendspy.engine.export import export_run
from eigendspy.testing.tiny_model import qwen2_5_template
from eigendspy.train.config_io import ConfigError, load_config
from eigendspy.train.sft import SFTRunConfig, build_sft_trainer, resolve_dataset_path, train_sft
from tests.train.sft_helpers import make_engine_run, tiny_config

TOOLS = [{"type": "function", "function": {
    "name": "update_task_status", "description": "Set a task's status.",
    "parameters": {"type": "object", "properties": {"task_id": {"type": "string"}, "status": {"type": "string"}},
                   "required": ["task_id", "status"]}}}]


def _call(call_id, task_id):
    return {"id": call_id, "type": "function",
            "function": {"name": "update_task_status", "arguments": {"task_id": task_id, "status": "completed"}}}


CONVERSATION = [
    {"role": "system", "content": "<instructions>\nHelp.\n</instructions>\n<policy>\nBe kind.\n</policy>"},
    {"role": "assistant", "content": "Hi! How can I help you today?"},
    {"role": "user", "content": "Please mark task_1 as completed."},
    {"role": "assistant", "content": None, "tool_calls": [_call("c1", "task_1")]},
    {"role": "tool", "tool_call_id": "c1", "content": '{"id": "task_1", "title": "Report", "done": true}'},
    {"role": "assistant", "content": "Done: task_1 is completed."},
    {"role": "user", "content": "And task_2 and task_3, please."},
    {"role": "assistant", "content": None, "tool_calls": [_call("c2", "task_2"), _call("c3", "task_3")]},
    {"role": "tool", "tool_call_id": "c2", "content": '{"id": "task_2", "title": "Offsite", "done": true}'},
    {"role": "tool", "tool_call_id": "c3", "content": '{"id": "task_3", "title": "Budget", "done": true}'},
    {"role": "assistant", "content": "Both are completed too."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_engine_run(tmp_path_factory.mktemp("sft") / "run")


@pytest.fixture(scope="module")
def export_dir(run_dir, tmp_path_factory):
    return export_run(run_dir, get_domain, tmp_path_factory.mktemp("sft") / "export").out_dir


@pytest.fixture(scope="module")
def agent_run(tiny_model_dir, export_dir, tmp_path_factory):
    """Two steps on the agent set (a checkpoint at step 2), with TensorBoard logging on."""
    config = tiny_config(tiny_model_dir, tmp_path_factory.mktemp("sft") / "agent", dataset=export_dir,
                         report_to=["tensorboard"])
    return config, train_sft(config)


def _trained_text(trainer, tokenizer, row=0):
    labels = trainer.train_dataset[row]["labels"]
    return tokenizer.decode([t for t in labels if t != -100])


# -- templates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("generation_prompt", [False, True])
def test_both_qwen_templates_render_identical_token_ids(tokenizer, generation_prompt):
    messages = CONVERSATION[:-1] if generation_prompt else CONVERSATION
    kwargs = dict(tools=TOOLS, tokenize=True, return_dict=False, add_generation_prompt=generation_prompt)
    plain = tokenizer.apply_chat_template(messages, chat_template=qwen2_5_template(), **kwargs)
    training = tokenizer.apply_chat_template(messages, chat_template=qwen2_5_template(training=True), **kwargs)
    assert plain == training and len(plain) > 200
    text = tokenizer.decode(plain).split("<|im_end|>", 1)[1]  # after the system turn (it shows the call format)
    assert text.count("<tool_call>") == 3 and text.count("<tool_response>") == 3 and "task_2 and task_3" in text


def test_training_template_masks_exactly_the_assistant_turns(tokenizer):
    out = tokenizer.apply_chat_template(CONVERSATION, tools=TOOLS, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True, chat_template=qwen2_5_template(True))
    masked = tokenizer.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m])
    for message in CONVERSATION:
        if message["role"] == "assistant" and message["content"]:
            assert message["content"] in masked
        elif message["role"] != "assistant":
            assert message["content"] not in masked
    assert "<tool_response>" not in masked and "<policy>" not in masked
    assert masked.count("<tool_call>") == 3 and masked.count("<|im_end|>") == 5  # every turn learns to stop


# -- agent side -------------------------------------------------------------------------------------


def test_labels_cover_assistant_tokens_only(tiny_model_dir, export_dir, tokenizer, tmp_path):
    trainer = build_sft_trainer(tiny_config(tiny_model_dir, tmp_path, dataset=export_dir))
    assert trainer.chat_template is None and not trainer.args.assistant_only_loss  # our masks, not TRL's swap
    rows = load_from_disk(str(export_dir / "sft_agent"))
    for i, row in enumerate(rows):
        trained = _trained_text(trainer, tokenizer, i)
        said = [m for m in row["messages"] if m["role"] == "assistant"]
        assert all(m["content"] in trained for m in said if m["content"])
        assert trained.count("<|im_end|>") == len(said)
        assert '<tool_call>\n{"name": "update_task_status", "arguments": {"task_id": "task_' in trained
        assert "<policy>" not in trained and "<tool_response>" not in trained and "<tools>" not in trained
        assert all(m["content"] not in trained for m in row["messages"] if m["role"] == "user")


def test_agent_sft_trains_and_saves_only_an_adapter(agent_run, tiny_model_dir, tokenizer):
    from peft import PeftModel

    config, result = agent_run
    assert result.global_step == 2 and result.resumed_from is None and result.num_processes == 1
    assert math.isfinite(result.final_loss) and result.final_loss > 0 and result.num_examples >= 2
    assert result.num_tokens > 0 and result.tokens_per_second > 0
    assert result.dataset_path.name == "sft_agent" and result.adapter_dir == config.output_dir / "adapter"
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert not (result.adapter_dir / "model.safetensors").exists()  # the base weights are not copied
    saved = AutoTokenizer.from_pretrained(result.adapter_dir)
    assert saved.chat_template == qwen2_5_template()  # TRL's parsing-recognised template, not the training one
    assert list((config.output_dir / "runs").rglob("events.out.tfevents.*"))  # TensorBoard by default
    assert json.loads((config.output_dir / "sft_config.json").read_text())["side"] == "agent"

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = PeftModel.from_pretrained(base, result.adapter_dir)
    lora = {k: v for k, v in tuned.state_dict().items() if "lora_" in k}
    assert lora and any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at zero: it trained
    for name, value in tuned.get_base_model().state_dict().items():
        if "lora_" not in name:  # every base weight inside the PEFT wrapper is untouched
            assert torch.equal(value, reference[name.replace(".base_layer", "")]), name
    merged = tuned.merge_and_unload().state_dict()
    changed = {k for k, v in merged.items() if not torch.equal(v, reference[k])}
    assert changed and all(k.endswith("proj.weight") for k in changed)  # only LoRA-targeted linears moved
    assert not any("embed" in k or "norm" in k for k in changed)


def test_resume_continues_from_the_checkpoint(agent_run, tmp_path):
    config, _ = agent_run
    out = tmp_path / "resumed"
    shutil.copytree(config.output_dir, out)
    again = train_sft(config.model_copy(update={"output_dir": out, "max_steps": 3, "report_to": []}))
    assert again.resumed_from == out / "checkpoint-2" and again.global_step == 3
    assert (out / "checkpoint-3").is_dir() and math.isfinite(again.final_loss)
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]


# -- user side --------------------------------------------------------------------------------------


def test_user_side_trains_on_sft_user_from_a_run_dir(tiny_model_dir, run_dir, tokenizer, tmp_path):
    config = tiny_config(tiny_model_dir, tmp_path / "user", run_dir=run_dir, side="user")
    result = train_sft(config)
    assert result.side == "user" and result.dataset_path == config.output_dir / "data" / "sft_user"
    assert result.global_step == 2 and math.isfinite(result.final_loss)
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    trainer = build_sft_trainer(config)  # the export is already there; the labels are the user's words
    row = load_from_disk(str(result.dataset_path))[0]
    assert "<scenario>" in row["messages"][0]["content"]
    trained = _trained_text(trainer, tokenizer)
    spoken = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert all(text in trained for text in spoken) and "###STOP###" in trained
    assert "How can I help you today?" not in trained and "<scenario>" not in trained


# -- configs and errors -----------------------------------------------------------------------------


def test_configs_load_from_toml_yaml_and_json(tmp_path):
    expected = SFTRunConfig(model="m", dataset="d", output_dir="o", max_steps=5, lora={"r": 4})
    (tmp_path / "c.toml").write_text('model = "m"\ndataset = "d"\noutput_dir = "o"\nmax_steps = 5\n[lora]\nr = 4\n')
    (tmp_path / "c.yaml").write_text("model: m\ndataset: d\noutput_dir: o\nmax_steps: 5\nlora: {r: 4}\n")
    (tmp_path / "c.json").write_text(json.dumps({"model": "m", "dataset": "d", "output_dir": "o", "max_steps": 5,
                                                 "lora": {"r": 4}}))
    for name in ("c.toml", "c.yaml", "c.json"):
        assert load_config(tmp_path / name, SFTRunConfig) == expected
    assert load_config(tmp_path / "c.toml", SFTRunConfig, {"max_steps": 9, "seed": None}).max_steps == 9
    (tmp_path / "bad.toml").write_text('model = "m"\ndataset = "d"\noutput_dir = "o"\nlearning_rat = 1\n')
    with pytest.raises(ConfigError, match="learning_rat: Extra inputs"):
        load_config(tmp_path / "bad.toml", SFTRunConfig)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", SFTRunConfig)
    with pytest.raises(ValidationError, match="exactly one of"):
        SFTRunConfig(model="m", dataset="d", run_dir="r", output_dir="o")


def test_shipped_example_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    assert load_config(root / "sft_agent.toml", SFTRunConfig).side == "agent"
    assert load_config(root / "sft_user.toml", SFTRunConfig).side == "user"


def test_clear_errors_for_missing_paths_and_wrong_side(tiny_model_dir, export_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        train_sft(tiny_config(tiny_model_dir, tmp_path, dataset=tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="model path not found"):
        train_sft(tiny_config(tmp_path / "no-model", tmp_path, dataset=export_dir))
    with pytest.raises(FileNotFoundError, match="run_dir not found"):
        train_sft(tiny_config(tiny_model_dir, tmp_path, run_dir=tmp_path / "no-run"))
    with pytest.raises(ValueError, match="is the sft_agent set but side='user'"):
        resolve_dataset_path(tiny_config(tiny_model_dir, tmp_path, dataset=export_dir / "sft_agent", side="user"))
    assert resolve_dataset_path(tiny_config(tiny_model_dir, tmp_path, dataset=export_dir / "sft_agent")).is_dir()


# -- command line -----------------------------------------------------------------------------------


def test_cli_train_sft_and_user_write_result_json(tiny_model_dir, export_dir, tmp_path):
    from eigendspy.cli import app

    config = tmp_path / "sft.toml"
    config.write_text(f'model = "{tiny_model_dir}"\ndataset = "{export_dir}"\noutput_dir = "{tmp_path / "a"}"\n'
                      "per_device_train_batch_size = 1\ngradient_accumulation_steps = 1\nmax_length = 4096\n"
                      "activation_checkpointing = false\nuse_cpu = true\nreport_to = []\n")
    runner = CliRunner()
    out = runner.invoke(app, ["train", "sft", "--config", str(config), "--max-steps", "1"])
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["global_step"] == 1 and result["side"] == "agent" and "global_step" in out.output
    out = runner.invoke(app, ["train", "user", "--config", str(config), "--max-steps", "1",
                              "--output-dir", str(tmp_path / "u")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "u" / "result.json").read_text())["dataset_path"].endswith("sft_user")
    out = runner.invoke(app, ["train", "sft", "--config", str(config), "--dataset", str(tmp_path / "nope")])
    assert out.exit_code == 2 and "dataset not found" in out.output
