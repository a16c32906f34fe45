"""Infrastructure errors are never training signal: retried, refilled, counted, and fatal past a threshold."""

from __future__ import annotations

import pytest

from eigendspy.testing.backend import ScriptedBackend
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.filtering import GroupsLost, TaskPool, fill_groups
from eigendspy.train.grpo.rollout import TooManyInfraErrors
from eigendspy.train.grpo.run import build_trainer, load_tasks
from tests.train.grpo_helpers import TASK_IDS, trial_script, trial_user

MARK = "FLAKYSERVER"  # what a doomed episode's policy turn says, so its tokens can be looked for in the loss
ERROR = "adapter policy-step-0 is not loaded (404 model does not exist)"


@pytest.fixture()
def config(tiny_model_dir, tau2_dir, tmp_path):
    return GRPORunConfig(model=str(tiny_model_dir), output_dir=str(tmp_path / "grpo"), domain="mock",
                         data_dir=str(tau2_dir / "mock"), task_ids=TASK_IDS, num_generations=4, tasks_per_step=2,
                         max_steps=1, learning_rate=5e-2, report_to=[], use_cpu=True, max_new_tokens=256,
                         lora_r=4, lora_alpha=8, save_steps=1000, concurrency=4)


def _train(config, doomed: set[int]):
    _, tasks = load_tasks(config)
    trainer, rollout = build_trainer(config, user=trial_user(), backend=None, capture=True, shuffle_dataset=False)
    script = trial_script(tasks, doomed=doomed, mark=MARK, error=ERROR)
    rollout.backend = ScriptedBackend(trainer.processing_class, script)
    trainer.train()
    return trainer, rollout


def _trained_text(trainer) -> list[str]:
    """The completions the loss actually saw, decoded (padding removed)."""
    rows = [ids[mask.bool()] for batch in trainer.captured
            for ids, mask in zip(batch["completion_ids"], batch["completion_mask"], strict=True)]
    return [trainer.processing_class.decode(ids.tolist()) for ids in rows]


def test_failed_episodes_are_retried_counted_and_never_reach_the_loss(config):
    trainer, rollout = _train(config.model_copy(update={"infra_retries": 1}), doomed={1, 6})

    (entry,) = rollout.history
    assert entry["infra_errors"] == 2 and entry["groups_lost"] == 0 and entry["infra_error_share"] == 2 / 10
    assert entry["first_infra_error"].endswith(f"InfrastructureError: {ERROR}")
    assert trainer.state.log_history[0]["rollout/infra_errors"] == 2.0
    texts = _trained_text(trainer)
    assert len(texts) == 8 and sum("All done" in t for t in texts) >= 4  # whole groups, real episodes
    assert not any(MARK in t for t in texts)


def test_a_group_still_failing_is_replaced_by_a_fresh_task(config):
    trainer, rollout = _train(config.model_copy(update={"infra_retries": 0, "max_infra_error_share": 0.5}),
                              doomed={2})

    (entry,) = rollout.history
    assert entry["infra_errors"] == 1 and entry["groups_lost"] == 1 and entry["groups_run"] == 3
    assert entry["kept_rewards"] == [1.0, 0.0, 1.0, 0.0] * 2
    texts = _trained_text(trainer)
    assert len(texts) == 8 and not any(MARK in t for t in texts)


def test_too_many_failures_stop_the_run_with_the_share_threshold_and_first_error(config):
    with pytest.raises(TooManyInfraErrors) as info:
        _train(config.model_copy(update={"infra_retries": 0}), doomed={0, 1, 2, 5})
    message = str(info.value)
    assert "4 of 8 episode attempts in this step (50.0%)" in message
    assert "above max_infra_error_share=0.25" in message and f"InfrastructureError: {ERROR}" in message


def test_fill_groups_never_keeps_a_lost_group_and_bounds_its_refills():
    calls = []

    def run(ids):
        calls.append(list(ids))
        return [None if tid == "a" else [1.0, 1.0] for tid in ids]

    slots, kept, stats = fill_groups(["a", "b"], run, TaskPool(["a", "b", "c"], seed=0), enabled=False)
    assert slots == ["c", "b"] and kept == [2, 1] and calls == [["a", "b"], ["c"]]
    assert stats.groups_lost == 1 and stats.groups_dropped == 0

    with pytest.raises(GroupsLost, match="'a' still had no complete group after 3 rounds"):
        fill_groups(["a"], run, TaskPool(["a"], seed=0), max_rounds=2)
