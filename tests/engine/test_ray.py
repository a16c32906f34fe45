"""The engine's items on a local 2-CPU Ray cluster give the same accepted set as in-process."""

from __future__ import annotations

import asyncio

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
