"""SFT on a chat template TRL cannot patch: end to end, the loss on the masked tokens only, and the same tokens as GRPO.

The model is the tiny one with a plain ChatML template (`eigendspy.testing.chat_templates`): no tool
support and no ``{% generation %}`` markers, like SmolLM2-135M-Instruct's own template.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from eigendspy.core.orchestrator import GREETING
from eigendspy.core.participants import FunctionParticipant
from eigendspy.core.render import ChatPrompt, agent_chat
from eigendspy.domains import get_domain
from eigendspy.engine.export import export_run
from eigendspy.testing.backend import ScriptedBackend
from eigendspy.testing.chat_templates import plain_chatml_template, with_chat_template
from eigendspy.train.backends.base import SamplingParams
from eigendspy.train.chat_tokens import tokenize_dialogue
from eigendspy.train.grpo.rollout import EpisodeRunner, episode_to_sample
from eigendspy.train.policy import ChatModelParticipant
from eigendspy.train.sft import build_sft_trainer, load_sft_dataset, resolve_dataset_path, train_sft
from tests.train.sft_helpers import make_engine_run, tiny_config

AGENT_TURNS = ['<tool_call>\n{"name": "create_task", "arguments": {"user_id": "user_1", "title": "Important Meeting"}}'
               "\n</tool_call>", "Your task is created. Anything else?", "You're welcome. Goodbye!"]
USER_TURNS = ["Please create a task 'Important Meeting' for user_1.", "No, that is all, thanks.", "###STOP###"]


@pytest.fixture(scope="module")
def chatml_dir(tiny_model_dir, tmp_path_factory):
    return with_chat_template(tiny_model_dir, tmp_path_factory.mktemp("chatml") / "model", plain_chatml_template())


@pytest.fixture(scope="module")
def tokenizer(chatml_dir):
    return AutoTokenizer.from_pretrained(chatml_dir)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    run = make_engine_run(tmp_path_factory.mktemp("sft") / "run")
    return export_run(run, get_domain, tmp_path_factory.mktemp("sft") / "export").out_dir


def test_train_sft_runs_on_a_template_trl_cannot_patch(chatml_dir, export_dir, tokenizer, tmp_path):
    result = train_sft(tiny_config(chatml_dir, tmp_path / "agent", dataset=export_dir))
    assert result.global_step == 2 and math.isfinite(result.final_loss) and result.final_loss > 0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(result.adapter_dir).chat_template == plain_chatml_template()


@pytest.mark.parametrize("side", ["agent", "user"])
def test_loss_counts_exactly_the_assistant_tokens(chatml_dir, export_dir, tokenizer, tmp_path, side):
    config = tiny_config(chatml_dir, tmp_path, dataset=export_dir, side=side)
    trainer = build_sft_trainer(config)
    row = load_sft_dataset(resolve_dataset_path(config))[0]
    ids, mask = tokenize_dialogue(tokenizer, ChatPrompt(messages=row["messages"], tools=row["tools"]))
    example = trainer.train_dataset[0]
    assert example["input_ids"] == ids
    assert [label != -100 for label in example["labels"]] == [bool(m) for m in mask]
    said = [m for m in row["messages"] if m["role"] == "assistant"]
    trained = tokenizer.decode([t for t in example["labels"] if t != -100], skip_special_tokens=False)
    assert trained.count("<|im_end|>") == len(said) and all(m["content"] in trained for m in said if m["content"])

    batch = trainer.data_collator([example])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"]).logits[0, :-1]
    per_token = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(ids[1:]), reduction="none")
    on_mask = torch.tensor(mask[1:], dtype=torch.bool)
    assert torch.allclose(loss, per_token[on_mask].mean(), atol=1e-5)
    assert not torch.allclose(loss, per_token.mean(), atol=1e-3)  # context tokens would change it


def test_sft_masks_the_tokens_grpo_trains_on(tokenizer, tau2_dir):
    """A scripted rollout's ids and env_mask equal SFT's tokenisation of the same dialogue, but for the greeting:
    the orchestrator writes it (a rollout never samples it), while an SFT row trains every assistant turn."""
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    task = next(t for t in domain.tasks() if t.id == "create_task_1")
    backend = ScriptedBackend(tokenizer, lambda text, _rng: AGENT_TURNS[text.count("<|im_start|>assistant") - 2])
    policy = ChatModelParticipant(backend, tokenizer, sampling=SamplingParams())
    user = FunctionParticipant(lambda messages, _ctx: USER_TURNS[sum(m.role == "user" for m in messages)])
    (episode,) = EpisodeRunner(domain, policy, user, concurrency=1).run([(task, 0)])
    assert episode.reward == 1.0  # the scripted call reached the tool: the inlined format parses back
    sample = episode_to_sample(episode)
    last = max(i for i, m in enumerate(episode.messages) if m.role == "assistant")
    chat = agent_chat(domain.policy, domain.tool_schemas("assistant"), episode.messages[: last + 1])
    ids, mask = tokenize_dialogue(tokenizer, chat)
    assert ids == sample.prompt_ids + sample.completion_ids
    rollout_mask = [0] * len(sample.prompt_ids) + sample.env_mask
    differ = [k for k in range(len(ids)) if mask[k] != rollout_mask[k]]
    assert tokenizer.decode([ids[k] for k in differ], skip_special_tokens=False) == GREETING + "<|im_end|>"
    assert all(mask[k] == 1 for k in differ) and differ == list(range(differ[0], differ[-1] + 1))
    sampled = tokenizer.decode([t for t, m in zip(ids, rollout_mask, strict=True) if m], skip_special_tokens=False)
    assert sampled == "".join(turn + "<|im_end|>" for turn in AGENT_TURNS)
