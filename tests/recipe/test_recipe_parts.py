"""The recipe's parts on their own: stage keys and resume, the split, the grid planner, the eval user, presets."""

from __future__ import annotations

import pytest

from eigendspy.agents import GoldTeacher
from eigendspy.core.orchestrator import EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.records import Stage, TaskRecord
from eigendspy.core.task import Action, EvaluationCriteria, StructuredUserInstructions, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.recipe import PRESETS, GridPlanner, RecipeConfig, ScenarioUser, StageStore, split_by_cell
from eigendspy.recipe.config import SplitSettings
from eigendspy.scoring import Checker


def test_a_stage_is_skipped_under_the_same_key_and_its_dependents_rerun_after_it(tmp_path):
    store, calls = StageStore(tmp_path), []

    def stage(name):
        return lambda folder: calls.append(name) or {"name": name}

    a = store.run("a", {"x": 1}, [], stage("a"))
    b = store.run("b", {"y": 1}, [a], stage("b"))
    assert store.run("a", {"x": 1}, [], stage("a")).skipped
    assert store.run("b", {"y": 1}, [a], stage("b")).skipped and calls == ["a", "b"]
    a2 = store.run("a", {"x": 2}, [], stage("a"))
    assert not a2.skipped and a2.run_id != a.run_id
    assert not store.run("b", {"y": 1}, [a2], stage("b")).skipped and calls == ["a", "b", "a", "b"]
    assert b.result == {"name": "b"}


def test_an_interrupted_stage_keeps_its_partial_outputs_for_the_same_key_only(tmp_path):
    store = StageStore(tmp_path)

    def crash(folder):
        (folder / "checkpoint").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.run("s", {"k": 1}, [], crash)
    kept = store.run("s", {"k": 1}, [], lambda folder: {"resumed": (folder / "checkpoint").exists()})
    assert kept.result == {"resumed": True}
    with pytest.raises(RuntimeError):
        store.run("t", {"k": 1}, [], crash)
    cleared = store.run("t", {"k": 2}, [], lambda folder: {"resumed": (folder / "checkpoint").exists()})
    assert cleared.result == {"resumed": False}


def _record(i: int, intent: str, task_id: str, title: str) -> TaskRecord:
    plan = PlanPair(plan_id=f"p{i}", synthesis=SynthesisPlan(intent_family=intent, complexity="single_action",
                                                             tool_pattern="x", user_style="y"),
                    evaluation=EvaluationPlan(rubric="r"))
    action = Action(action_id="a", name="create_task", arguments={"user_id": "user_1", "title": title})
    task = Task(id=task_id, user_scenario=UserScenario(instructions=f"Create a task called {title} for user_1."),
                evaluation_criteria=EvaluationCriteria(actions=[action]))
    return TaskRecord(work_key=f"s{i}/r0/t0", stream=i, round=0, plan=plan, task=task, accepted=True,
                      stage=Stage.ACCEPT)


def test_split_holds_out_whole_cells_and_drops_near_duplicates_of_training_tasks():
    records = [_record(0, "create", "a", "Quarterly report"), _record(1, "create", "b", "Team offsite"),
               _record(2, "close", "c", "Quarterly report"), _record(3, "close", "d", "Hiring plan for next year")]
    for seed in range(6):
        report = split_by_cell(records, SplitSettings(held_out_cells=0.5, max_jaccard=0.8), seed=seed)
        train_cells = {tuple(c) for c in report.train_cells}
        assert len(train_cells) == 1 and not train_cells & {tuple(c) for c in report.held_out_cells}
        held = {"a", "b"} if ("close", "single_action", "none") in train_cells else {"c", "d"}
        dup = {"a": "c", "c": "a"}  # same title, same user: the same task under two cells
        assert set(report.held_out_task_ids) == held - set(dup)
        assert {d.held_out for d in report.dropped} == held & set(dup)
        assert all(d.train == dup[d.held_out] and d.jaccard == 1.0 for d in report.dropped)
        assert report.max_cross_jaccard < 0.8
    with pytest.raises(ValueError, match="at least 2"):
        split_by_cell(records[:2], SplitSettings())


def test_grid_planner_gives_every_stream_its_own_cell():
    plans = run_sync(GridPlanner(seed=1).acall(domain=get_domain("mock"), n=4, round=0)).plans
    assert len(plans) == 4 and len({p.synthesis.cell for p in plans}) == 4
    assert [p.plan_id for p in plans] == ["p0_0", "p0_1", "p0_2", "p0_3"]


def _play(domain, tasks, confirm=True):
    orch = Orchestrator(domain, GoldTeacher(confirm_writes=confirm), ScenarioUser(), config=EpisodeConfig(max_steps=20),
                        checker_factory=lambda t: Checker(domain, t, exclude_nl=True))
    return run_sync(orch.run_many(tasks, 1))


def test_the_eval_user_conveys_small_model_tasks_and_confirms_the_go_ahead():
    domain = get_domain("mock", num_users=4, tasks_per_user=3)
    action = Action(action_id="a", name="update_task_status", arguments={"task_id": "task_3", "status": "completed"})
    task = Task(id="small", user_scenario=UserScenario(instructions=StructuredUserInstructions(
        domain="mock", reason_for_call='You want the agent to update the status of a task (task_id "task_3", status '
        '"completed").', known_info="task_id: task_3; status: completed",
        task_instructions="Answer briefly, and end the chat once it is done.")),
        evaluation_criteria=EvaluationCriteria(actions=[action]))
    for confirm in (True, False):
        [episode] = _play(domain, [task], confirm)
        said = [m.content for m in episode.messages if m.role == "user"]
        assert episode.reward == 1.0 and said[0].startswith("Please update the status of a task")
        assert said[-1].endswith("###STOP###") and ("Yes, please go ahead." in said) == confirm


def test_the_eval_user_lets_the_teacher_solve_the_tau2_mock_tasks_that_have_gold_actions(tau2_dir):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    episodes = {e.task_id: e.reward for e in _play(domain, domain.tasks())}
    unsolvable = {"update_task_with_history_and_env_assertions", "update_task_with_user_tools"}
    # the first has no gold action at all; the second needs a device action (dismiss a notification) none names
    assert {t for t, r in episodes.items() if r != 1.0} == unsolvable


def test_presets_validate_and_overrides_update_sections_key_by_key():
    assert set(PRESETS) == {"tiny", "cpu", "gpu", "demo"} and all(p.preset == name for name, p in PRESETS.items())
    changed = PRESETS["cpu"].with_overrides(grpo={"steps": 3})
    assert changed.grpo.steps == 3 and changed.grpo.generations == PRESETS["cpu"].grpo.generations
    with pytest.raises(ValueError, match="extra"):
        RecipeConfig.model_validate({"grpo": {"stepz": 3}})
    with pytest.raises(ValueError, match="user model"):
        RecipeConfig(columns=["sft_grpo"], sft={"user_model": False})
