"""DataEngine end to end on scripted roles: mock and retail, faults, resume, export."""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.domains import get_domain
from eigendspy.engine import DataEngine, EngineConfig
from eigendspy.store import RunManifest, RunStore
from tests.engine.scripted_roles import scripted_roles


def big_mock():
    return get_domain("mock", num_users=8, tasks_per_user=5)


def run_engine(tmp_path, domain, config: EngineConfig, roles=None, name="run"):
    store = RunStore.create(tmp_path / name, RunManifest(config=config, seed=config.seed, domain=domain.name))
    try:
        engine = DataEngine(domain, roles or scripted_roles(), store, config)
        return asyncio.run(engine.run()), store
    finally:
        store.close()


def accepted_set(run_dir):
    store = RunStore.open(run_dir, read_only=True)
    return sorted((d.work_key, d.task_id, tuple(m.content or "" for m in d.messages))
                  for d in store.accepted_dialogues())


@pytest.mark.parametrize("name", ["mock", "retail"])
def test_end_to_end(tmp_path, tau2_dir, name):
    domain = get_domain(name, data_dir=tau2_dir / name) if name == "retail" else big_mock()
    cfg = EngineConfig(domain=name, streams=2, rounds=2, tasks_per_round=2, episodes_per_task=1,
                       held_out_split="test")
    result, store = run_engine(tmp_path, domain, cfg)
    assert result.accepted_dialogues >= 2, store.summary().model_dump()
    reopened = RunStore.open(result.run_dir, read_only=True)
    for d in reopened.accepted_dialogues():
        assert d.checker_passed and d.validator.passed and d.reward == 1.0
        assert d.termination_reason == "user_stop"
    assert result.diversity.plans >= 2 and result.diversity.plan_cells_covered >= 2
    assert (result.run_dir / "summary.json").exists() and (result.run_dir / "diversity.json").exists()
