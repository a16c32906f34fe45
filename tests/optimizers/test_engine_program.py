"""The whole engine (generator + rollout roles) as one DSPy program with a per-role metric."""

from __future__ import annotations

import random

import dspy

import eigendspy.testing.optimizers as il
from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.domains import get_domain
from eigendspy.engine.entities import sample_entities
from eigendspy.optimizers import evolve
from eigendspy.optimizers.engine_program import EngineProgram, per_role_metric
from eigendspy.testing.lm import scripted_lm
from eigendspy.testing.roles import generator as generator_policy
from eigendspy.testing.roles import planner as planner_policy


def _examples(domain, n, offset=0):
    from eigendspy.agents.meta_planner import MetaPlanner

    plan = MetaPlanner(lm=scripted_lm(planner_policy))(domain=domain, n=1).plans[0]
    return [dspy.Example(plan=plan, entities=sample_entities(domain, random.Random(offset + i), k=4),
                         task_id=f"t{offset + i}").with_inputs("plan", "entities", "task_id") for i in range(n)]


def _program(domain):
    return EngineProgram(domain, generator=TaskGenerator(lm=scripted_lm(generator_policy)),
                         assistant=Assistant(lm=scripted_lm(il.episode_assistant_policy)),
                         user=UserSimulator(lm=scripted_lm(il.episode_user_policy)))


def test_per_role_feedback_and_gepa_over_the_whole_program():
    domain = get_domain("mock", num_users=8, tasks_per_user=5)
    program = _program(domain)
    names = [name for name, _ in program.named_predictors()]
    assert any(n.startswith("generator.") for n in names) and any(n.startswith("assistant.") for n in names)
    metric = per_role_metric(domain)
    example = _examples(domain, 1)[0]
    pred = program(**example.inputs())
    assert pred.check is not None and pred.task is not None
    overall = metric(example, pred)
    assert overall.score == 0.0 and il.STATUS_REASON in overall.feedback  # the assistant never names the status
    assert il.STATUS_REASON in metric(example, pred, pred_name="assistant.turn").feedback
    assert "verified" in metric(example, pred, pred_name="generator.generate").feedback
    compiled, report = evolve(program, _examples(domain, 3), _examples(domain, 3, offset=50), metric,
                              optimizer="gepa", budget=20, reflection_lm=scripted_lm(il.episode_reflection_policy))
    assert report.before.mean < 0.5 and report.after.mean > 0.9, report.message
    assert il.STATUS_RULE in compiled.assistant.turn.signature.instructions
