"""The recipe end to end on the tiny random model: every stage, resumability, an honest split, the report.

Why the tiny model and scripted synthesis roles: this proves the machinery — the data engine with the gold
teacher, the split, SFT of agent and user model, three GRPO columns, pass^k of every column on both held-out
sets, the report — in CI time. A random model earns no reward, so the numbers are zeros; what is checked is
that every stage ran, that a second run skips them all, and that changing only GRPO's steps reruns only the
GRPO columns and their evaluations.
"""

from __future__ import annotations

import time

import pytest

from eigendspy.engine.export import read_records
from eigendspy.recipe import PRESETS, RecipeResult, run_recipe
from eigendspy.recipe.split import SplitReport, jaccard, shingles
from eigendspy.testing import scripted_roles
from tests.conftest import TAU2_DIR

GRPO_STAGES = {"train_sft_grpo", "train_grpo_no_filter", "train_grpo_untrained_user",
               "eval_sft_grpo", "eval_grpo_no_filter", "eval_grpo_untrained_user"}


def _config(model_dir, **overrides):
    tau2 = TAU2_DIR / "mock"
    return PRESETS["tiny"].with_overrides(model=str(model_dir), tau2_data=str(tau2) if tau2.is_dir() else None,
                                          split={"tau2": tau2.is_dir()}, **overrides)


def _run(config, out):
    events: dict[str, str] = {}
    started = time.perf_counter()
    result = run_recipe(config, out, roles=scripted_roles(), progress=lambda stage, event: events.update(
        {stage: event} if event != "done" else {}))
    return result, events, time.perf_counter() - started


@pytest.fixture(scope="module")
def first_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "out"
    return (out, *_run(_config(tiny_model_dir), out))


def test_every_stage_runs_and_the_report_validates(first_run):
    out, result, events, seconds = first_run
    print(f"\nfirst run: {seconds:.1f} s")
    assert set(events.values()) == {"start"}
    stored = RecipeResult.model_validate_json((out / "recipe.json").read_text())
    assert stored == result and stored.preset == "tiny" and stored.teacher == "gold"
    assert (out / "recipe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "eval_sft" / "synth" / "results.json").is_file()  # episodes kept as a tau2 results file
    sets = {"synth", "tau2"} if TAU2_DIR.joinpath("mock").is_dir() else {"synth"}
    for column in (*PRESETS["tiny"].columns, "teacher"):
        assert {e.held_out for e in result.evals if e.column == column} == sets, column
    for cell in result.evals:
        trials = 1 if cell.column == "teacher" else 2
        assert sorted(cell.pass_k) == list(range(1, trials + 1)) and set(cell.pass_k_ci) == set(cell.pass_k)
    assert result.cell("teacher", "synth").pass_k[1] == 1.0  # the eval user conveys every synthesized task
    assert {c.column for c in result.curves} == {"sft_grpo", "grpo_no_filter", "grpo_untrained_user"}
    assert all(len(c.reward) == 1 and len(c.filtered_fraction) == 1 for c in result.curves)
    assert [c.dynamic_filtering for c in result.curves] == [True, False, True]
    assert {s.stage for s in result.stages} >= {"synthesize", "split", "sft_agent", "sft_user", *GRPO_STAGES}
    assert result.synthesis["first_user_message_conveys_task"] == 1.0


def test_split_shares_no_plan_cell_and_no_near_duplicate(first_run):
    out, result, _, _ = first_run
    split = SplitReport.model_validate_json((out / "split" / "split.json").read_text())
    assert split.train_task_ids and split.held_out_task_ids
    assert not {tuple(c) for c in split.train_cells} & {tuple(c) for c in split.held_out_cells}
    tasks = {r.task.id: r for r in read_records(result.synthesis["run_dir"])[0] if r.accepted and r.task}
    held_cells = {tuple(c) for c in split.held_out_cells}
    assert all(tasks[t].plan.synthesis.cell in held_cells for t in split.held_out_task_ids)
    assert all(tasks[t].plan.synthesis.cell not in held_cells for t in split.train_task_ids)
    settings = PRESETS["tiny"].split
    worst = max(jaccard(shingles(tasks[h].task, settings.ngram), shingles(tasks[t].task, settings.ngram))
                for h in split.held_out_task_ids for t in split.train_task_ids)
    assert worst < settings.max_jaccard and worst == pytest.approx(split.max_cross_jaccard, abs=1e-4)
    exported = {row for row in (out / "split" / "export" / "rl_tasks").iterdir()}
    assert exported and result.split["counts"]["rl_tasks"] == len(split.train_task_ids)


def test_second_run_skips_every_stage_and_changed_grpo_steps_rerun_only_grpo(first_run, tiny_model_dir):
    out, result, _, _ = first_run
    again, events, seconds = _run(_config(tiny_model_dir), out)
    print(f"\nsecond run: {seconds:.1f} s")
    assert set(events.values()) == {"skip"} and len(events) == len(result.stages)
    assert again.evals == result.evals

    longer, events, seconds = _run(_config(tiny_model_dir, grpo={"steps": 2}), out)
    print(f"GRPO steps 1 -> 2: {seconds:.1f} s")
    assert {s for s, e in events.items() if e == "start"} == GRPO_STAGES
    assert {s for s, e in events.items() if e == "skip"} == {s.stage for s in result.stages} - GRPO_STAGES
    assert all(len(c.reward) == 2 for c in longer.curves)


def test_demo_report_names_what_ran_and_shows_exported_rows(first_run):
    from eigendspy.recipe.demo import LOSS_PLOT, REPORT, write_report

    out, result, _, _ = first_run
    report = write_report(result, out)
    assert report == out / REPORT
    text = report.read_text()
    for heading in ("## Synthesis", "## Export", "## LoRA SFT of the agent", "## Held-out evaluation",
                    "## Two exported rows"):
        assert heading in text, heading
    assert "| base | synth |" in text and "| sft | synth |" in text and "| teacher | synth |" in text
    rows = text.split("## Two exported rows", 1)[1]
    assert rows.count("task `") == min(2, result.split["counts"]["sft_agent"]) >= 1
    assert "**system**" in rows and "**assistant**" in rows and "**user**" in rows
    assert (out / LOSS_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out / "sft_agent" / "adapter") in text
