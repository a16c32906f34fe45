"""evolve(): GEPA and MIPROv2 close the loop on an instruction-dependent scripted LM; failures are
reported, not returned as "optimized"; compiled programs save and load to identical outputs."""

from __future__ import annotations

import json

import dspy
import pytest

import eigendspy.testing.optimizers as il
from eigendspy.agents import Assistant, UserSimulator
from eigendspy.domains import get_domain
from eigendspy.domains.mock import generate_db
from eigendspy.optimizers.evolve import evolve, load_compiled
from eigendspy.optimizers.metrics import AssistantEpisode, assistant_metric
from eigendspy.optimizers.report import EvolveReport
from eigendspy.testing.lm import scripted_lm
from tests.optimizers.test_metrics import mark_done

TRAIN = il.refund_examples(6)
HELD_OUT = il.refund_examples(7, offset=6)  # never shown to the optimizer; one gift-card order (partial credit)


def lms(reflection=il.reflection_policy):
    return scripted_lm(il.task_policy, model="scripted/task"), scripted_lm(reflection, model="scripted/reflect")


def feedback_shown(reflection_lm) -> str:
    return "\n".join(r.inputs.get("examples_with_feedback", "") for r in reflection_lm.log.requests)


def test_gepa_raises_the_held_out_metric_and_blank_feedback_does_not(tmp_path):
    task_lm, reflection_lm = lms()
    compiled, report = evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, optimizer="gepa", budget=30,
                              reflection_lm=reflection_lm, task_lm=task_lm, out_dir=str(tmp_path))
    assert report.before.mean < 0.5 < 0.9 < report.after.mean
    assert report.status == "improved" and report.accepted_proposals >= 1 and report.program_changed
    instruction = compiled.decide.signature.instructions
    assert il.REFUND_RULE in instruction and il.CONFIRM_RULE in instruction
    # the reflection prompt carried the checker's failure reasons, verbatim
    prompt = feedback_shown(reflection_lm)
    assert "refund went to the gift card instead of the original payment method" in prompt
    assert il.CONFIRM_REASON in prompt
    assert report.curve and report.curve[0].label.endswith("(seed)") and report.curve[-1].best == 1.0
    assert report.optimizer_usage.by_model["scripted/reflect"].calls == reflection_lm.call_count
    assert report.optimizer_usage.by_model["scripted/task"].calls > 0

    saved = EvolveReport.model_validate(json.loads((tmp_path / "report.json").read_text()))
    assert saved.status == "improved" and saved.after.mean == report.after.mean
    assert "**Status: improved**" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "score_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "compiled" / "refund_agent.json").exists()
    assert (tmp_path / "compiled" / "refund_agent.v1.report.json").exists()

    # ablation, same test: identical scores, blank feedback -> the reflection LM has nothing to act on
    task_lm, reflection_lm = lms()
    ablated, blank = evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.blank_feedback_checker, optimizer="gepa",
                            budget=30, reflection_lm=reflection_lm, task_lm=task_lm)
    assert blank.before.mean == report.before.mean and blank.after.mean < 0.5
    assert blank.status == "all_proposals_failed" and not blank.program_changed
    assert blank.proposals > 0 and blank.failed_proposals == 0 and blank.accepted_proposals == 0
    assert il.REFUND_REASON not in feedback_shown(reflection_lm)
    assert ablated.decide.signature.instructions == il.SEED_INSTRUCTION


def test_gepa_whose_reflection_lm_answers_garbage_is_reported_as_failed():
    task_lm, reflection_lm = lms(il.garbage_policy)
    compiled, report = evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, optimizer="gepa", budget=20,
                              reflection_lm=reflection_lm, task_lm=task_lm)
    assert report.status == "all_proposals_failed" and report.status != "improved"
    assert report.proposals > 0 and report.failed_proposals == report.proposals and report.accepted_proposals == 0
    assert "JSON" in report.message and "unchanged" in report.message
    assert report.proposal_errors and "not json" in report.proposal_errors[0]
    assert reflection_lm.call_count >= report.proposals  # GEPA retries each failed reflection once
    assert compiled.decide.signature.instructions == il.SEED_INSTRUCTION and not report.program_changed
    assert report.after.mean == report.before.mean < 0.5


def test_miprov2_picks_the_right_proposed_instruction_by_the_metric():
    task_lm = scripted_lm(il.task_policy, model="scripted/task")
    proposer = il.PromptModel()
    prompt_lm = scripted_lm(proposer, model="scripted/prompt")
    compiled, report = evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, optimizer="miprov2", budget=8,
                              reflection_lm=prompt_lm, task_lm=task_lm, optimizer_kwargs={"num_candidates": 3})
    assert report.before.mean < 0.5 < 0.9 < report.after.mean and report.status == "improved"
    # the pool had wrong candidates (one rule only); the search kept the one with both rules
    assert any(il.CONFIRM_RULE in p and il.REFUND_RULE not in p for p in proposer.proposed)
    instruction = compiled.decide.signature.instructions
    assert il.REFUND_RULE in instruction and il.CONFIRM_RULE in instruction
    assert report.proposals == 2 and report.accepted_proposals == 1
    assert len(report.curve) >= 8 and report.curve[0].label == "full (seed)" and report.curve[-1].best == 1.0
    assert report.optimizer_usage.by_model["scripted/prompt"].calls == prompt_lm.call_count


def test_bootstrap_path_runs_and_reports(tmp_path):
    program = il.RefundAgent()
    program.decide.signature = program.decide.signature.with_instructions(
        f"{il.SEED_INSTRUCTION} {il.REFUND_RULE} {il.CONFIRM_RULE}")
    compiled, report = evolve(program, TRAIN, HELD_OUT, il.refund_checker, optimizer="bootstrap", budget=2,
                              task_lm=scripted_lm(il.task_policy), num_threads=2, out_dir=str(tmp_path))
    assert len(compiled.decide.demos) == 2 and report.program_changed
    assert report.before.mean == report.after.mean == 1.0
    assert report.status == "unchanged" and "did not improve" in report.message  # demos added, nothing to gain
    assert report.proposals == report.accepted_proposals == 2 and report.curve == []
    assert any("before/after only" in n for n in report.notes)
    assert (tmp_path / "score_curve.png").exists()


def test_save_load_gives_identical_outputs(tmp_path):
    task_lm, reflection_lm = lms()
    program = il.RefundAgent()
    program.decide.set_lm(task_lm)  # a custom engine dspy cannot serialize: the artifact is saved without LMs
    compiled, _ = evolve(program, TRAIN, HELD_OUT, il.refund_checker, budget=30, reflection_lm=reflection_lm,
                         out_dir=str(tmp_path))
    fresh = il.RefundAgent()
    fresh.decide.set_lm(task_lm)
    assert load_compiled(fresh, tmp_path / "compiled") is fresh and fresh.decide.lm is task_lm
    assert fresh.decide.signature.instructions == compiled.decide.signature.instructions != il.SEED_INSTRUCTION
    for ex in HELD_OUT:
        a, b = compiled(**ex.inputs()), fresh(**ex.inputs())
        assert a.keys() == b.keys() == ["refund_to", "ask_confirmation"]
        assert all(a[k] == b[k] for k in a.keys())

    # a second run is a new version; the latest stays at <role>.json
    evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, budget=30, reflection_lm=lms()[1],
           task_lm=task_lm, out_dir=str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "compiled").glob("refund_agent.v*.json")) == [
        "refund_agent.v1.json", "refund_agent.v1.report.json", "refund_agent.v2.json", "refund_agent.v2.report.json"]


def test_gepa_evolves_the_assistant_over_full_episodes_and_a_bare_role_loads_it(tmp_path):
    mock = get_domain("mock", num_users=8, tasks_per_user=5)
    pending = [t.task_id for t in generate_db(0, num_users=8, tasks_per_user=5).tasks.values()
               if t.status == "pending"]
    examples = [dspy.Example(task=mark_done(mock, t, f"mark_{i}")).with_inputs("task")
                for i, t in enumerate(pending[:7])]
    user = UserSimulator(lm=scripted_lm(il.episode_user_policy, model="scripted/user"))
    assistant_lm = scripted_lm(il.episode_assistant_policy, model="scripted/assistant")
    reflection_lm = scripted_lm(il.episode_reflection_policy, model="scripted/reflect")
    program = AssistantEpisode(mock, Assistant(), user=user)
    compiled, report = evolve(program, examples[:4], examples[4:], assistant_metric(mock), budget=16,
                              reflection_lm=reflection_lm, task_lm=assistant_lm, out_dir=str(tmp_path))
    assert report.role == "assistant" and report.status == "improved"
    assert report.before.mean == 0.0 and report.after.mean == 1.0
    assert "never told the user 'completed'" in feedback_shown(reflection_lm)
    assert [c.predictor for c in report.changes] == ["assistant.turn"]

    bare = load_compiled(Assistant(lm=assistant_lm), tmp_path / "compiled")  # the role, outside the program
    assert bare.turn.signature.instructions == compiled.assistant.turn.signature.instructions
    assert il.STATUS_RULE in bare.turn.signature.instructions and bare.turn.lm is assistant_lm


def test_bad_arguments_fail_at_the_boundary():
    task_lm, reflection_lm = lms()
    with pytest.raises(TypeError, match="pred_name"):
        evolve(il.RefundAgent(), TRAIN, HELD_OUT, lambda g, p: 1.0, reflection_lm=reflection_lm)
    with pytest.raises(ValueError, match="optimizer must be"):
        evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, optimizer="simba")
    with pytest.raises(ValueError, match="budget must be"):
        evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, budget="huge")
    with pytest.raises(ValueError, match="non-empty"):
        evolve(il.RefundAgent(), [], HELD_OUT, il.refund_checker)
    with pytest.raises(ValueError, match="reflection_lm"):
        evolve(il.RefundAgent(), TRAIN, HELD_OUT, il.refund_checker, task_lm=task_lm)
    with pytest.raises(FileNotFoundError):
        load_compiled(il.RefundAgent(), "/nonexistent/compiled")
