"""GRPO on the tiny model: advantages the loss uses, dynamic filtering with refill, LoRA-only updates."""

from __future__ import annotations

import math

import pytest
import torch

from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.filtering import TaskPool, fill_groups, informative
from eigendspy.train.grpo.run import build_trainer, load_tasks
from tests.train.grpo_helpers import TASK_IDS, opening_user, scripted_backend


@pytest.fixture()
def config(tiny_model_dir, tau2_dir, tmp_path):
    return GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                         data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS, num_generations=4, tasks_per_step=2,
                         max_steps=1, learning_rate=5e-2, report_to=[], use_cpu=True, max_new_tokens=256,
                         lora_r=4, lora_alpha=8, save_steps=1000)


def _trainer(config, tokenizer_from=None, **kwargs):
    _, tasks = load_tasks(config)
    trainer, rollout = build_trainer(config, user=opening_user(), backend=None, capture=True, shuffle_dataset=False,
                                     **kwargs)
    rollout.backend = scripted_backend(trainer.processing_class, tasks)
    return trainer, rollout


def test_uninformative_groups_are_replaced_before_the_step_and_advantages_are_trls(config):
    trainer, rollout = _trainer(config)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    (entry,) = rollout.history
    # Step 1 drew [always right, always wrong]: both all-equal, both dropped and refilled.
    assert entry["groups_run"] == 4 and entry["groups_dropped"] == 2 and entry["filtered_fraction"] == 0.5
    assert entry["kept_rewards"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert entry["reward_mean_all"] == pytest.approx((4 + 0 + 2 + 2) / 16)

    (used,) = trainer.captured
    # TRL normalises with the unbiased std: [1, 0, 1, 0] -> +-0.5 / sqrt(1/3) = +-0.866 (eps 1e-4).
    # (TRL shuffles rows within a generation batch, so compare as a multiset.)
    expected = torch.tensor([-0.5] * 4 + [0.5] * 4) / (math.sqrt(1 / 3) + 1e-4)
    assert torch.allclose(used["advantages"].sort().values, expected, atol=1e-5)
    assert used["tool_mask"].shape == used["completion_mask"].shape and 0 < used["tool_mask"].sum() < used[
        "completion_mask"].sum()

    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" not in n)


def test_without_filtering_all_equal_groups_train_with_zero_advantage(config):
    trainer, rollout = _trainer(config.model_copy(update={"dynamic_filtering": False}))
    trainer.train()
    (entry,) = rollout.history
    assert entry["groups_dropped"] == 0 and entry["kept_rewards"] == [1.0] * 4 + [0.0] * 4
    assert torch.count_nonzero(trainer.captured[0]["advantages"]) == 0


def test_refill_is_bounded_and_keeps_the_last_group():
    pool = TaskPool(["a", "b"], seed=0)
    calls = []

    def run(ids):
        calls.append(list(ids))
        return [[1.0, 1.0]] * len(ids)

    slots, kept, stats = fill_groups(["a"], run, pool, max_rounds=2)
    assert len(calls) == 3 and stats.groups_dropped == 2 and stats.groups_kept_uninformative == 1
    assert kept == [2] and stats.filtered_fraction == pytest.approx(2 / 3)
    assert informative([0.0, 1.0]) and not informative([0.5, 0.5]) and not informative([])


def test_pool_prefers_least_recently_used_tasks():
    pool = TaskPool(["a", "b", "c"], seed=1)
    pool.mark_used("a")
    assert {pool.draw(), pool.draw()} == {"b", "c"}
    assert pool.draw(exclude={"b", "c"}) == "a"


def test_group_geometry_errors_are_clear():
    from eigendspy.train.grpo.trainer import _group_task_ids

    assert _group_task_ids(["x", "x", "y", "y"], 2) == ["x", "y"]
    with pytest.raises(ValueError, match="multiple of num_generations"):
        _group_task_ids(["x", "x", "y"], 2)
    with pytest.raises(ValueError, match="several tasks"):
        _group_task_ids(["x", "y"], 2)


def test_config_validation():
    with pytest.raises(ValueError, match="vllm_url"):
        GRPORunConfig(model="m", output_dir="o", backend="vllm")
    with pytest.raises(ValueError, match="user: unknown participant spec 'bob'"):
        GRPORunConfig(model="m", output_dir="o", user="bob")


def test_train_grpo_checkpoints_and_resumes(config, tmp_path):
    from eigendspy.train.grpo.run import train_grpo

    base = config.model_copy(update={"output_dir": str(tmp_path / "resume"), "save_steps": 1, "max_new_tokens": 8,
                                     "max_episode_steps": 4, "max_refill_rounds": 0, "tasks_per_step": 1})
    first = train_grpo(base.model_copy(update={"max_steps": 1}), user=opening_user())
    assert first.global_step == 1 and (tmp_path / "resume" / "checkpoint-1").is_dir()
    second = train_grpo(base.model_copy(update={"max_steps": 2}), user=opening_user())
    assert second.global_step == 2 and len(second.rollouts) == 1  # only the missing step ran
    assert (tmp_path / "resume" / "adapter" / "adapter_config.json").exists()
