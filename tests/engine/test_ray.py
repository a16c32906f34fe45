"""The engine's items on a local 2-CPU Ray cluster give the same accepted set as in-process."""

from __future__ import annotations

import asyncio
import functools

import pytest

from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.roles import scripted_roles
from tests.engine.test_engine import accepted_set, big_mock, run_engine

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_cluster():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_pool_matches_local_run(tmp_path, local_cluster):
    from eigendspy.engine.ray import RayWorkerPool

    cfg = EngineConfig(domain="mock", streams=2, rounds=1, tasks_per_round=2, episodes_per_task=1, seed=3)
    local, _ = run_engine(tmp_path, big_mock(), cfg, name="local")
    roles = scripted_roles()
    pool = RayWorkerPool.start(("mock", None, {"num_users": 8, "tasks_per_user": 5}), scripted_roles, cfg,
                               num_workers=2)
    store = RunStore.create(tmp_path / "ray", RunManifest(config=cfg, seed=cfg.seed, domain="mock"))
    try:
        result = asyncio.run(DataEngine(big_mock(), roles, store, cfg, worker=pool).run())
    finally:
        store.close()
        pool.shutdown()
    assert result.accepted_dialogues == local.accepted_dialogues >= 2
    assert accepted_set(result.run_dir) == accepted_set(local.run_dir)


def test_ray_actors_run_the_compiled_roles(tmp_path, local_cluster):
    """The trajectory judge runs in the actors; it passes a dialogue only under its compiled instructions."""
    from eigendspy.agents.trajectory_validator import TrajectoryValidator
    from eigendspy.engine.ray import RayWorkerPool
    from eigendspy.optimizers.report import save_compiled

    rule = "Compiled rule: accept only dialogues that end with the write confirmed."

    def judge_only_if_compiled(req):  # nested: Ray pickles it by value (workers cannot import tests/)
        passed = rule in req.instructions
        return {"passed": passed, "blame": "none" if passed else "assistant",
                "reasons": [] if passed else ["the judge ran uncompiled"]}

    judge = TrajectoryValidator()
    judge.judge.signature = judge.judge.signature.with_instructions(rule)
    save_compiled(judge, tmp_path, role="trajectory_validator")
    compiled = tmp_path / "compiled"
    factory = functools.partial(scripted_roles, trajectory_judge=judge_only_if_compiled)
    roles = factory()
    assert roles.load_compiled(compiled) == ["trajectory_validator"]
    cfg = EngineConfig(domain="mock", streams=2, rounds=1, tasks_per_round=2, episodes_per_task=1, seed=3)
    pool = RayWorkerPool.start(("mock", None, {"num_users": 8, "tasks_per_user": 5}), factory, cfg,
                               num_workers=2, compiled=compiled)
    store = RunStore.create(tmp_path / "ray", RunManifest(config=cfg, seed=cfg.seed, domain="mock"))
    try:
        result = asyncio.run(DataEngine(big_mock(), roles, store, cfg, worker=pool).run())
        reasons = [r.reason for r in store.summary().kinds["dialogue"].top_reasons]
    finally:
        store.close()
        pool.shutdown()
    assert not any("uncompiled" in r for r in reasons), reasons
    assert result.accepted_dialogues >= 2
