"""The engine's items on local worker processes: the same records as in-process, resumable, loud on a crash."""

from __future__ import annotations

import asyncio
import os

import pytest
from typer.testing import CliRunner

from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.processes import (
    ProcessWorkerPool,
    WorkerCrashedError,
    concurrency_shares,
    worker_count,
)
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.roles import scripted_roles_factory

SPEC = ("mock", None, {"num_users": 8, "tasks_per_user": 5})
CONFIG = EngineConfig(domain="mock", streams=4, rounds=1, tasks_per_round=2, episodes_per_task=1, seed=3)


def domain():
    name, data_dir, kwargs = SPEC
    return get_domain(name, data_dir=data_dir, **kwargs)


def run(root, factory, pool=None, resume=False):
    store = RunStore.open(root) if resume else RunStore.create(root, RunManifest(config=CONFIG, seed=CONFIG.seed,
                                                                                 domain="mock"))
    try:
        return asyncio.run(DataEngine(domain(), factory(), store, CONFIG, worker=pool).run())
    finally:
        store.close()


def accepted(root):
    """Accepted task contents and accepted dialogues (key, task, every message), in a stable order."""
    store = RunStore.open(root, read_only=True)
    tasks = sorted((r.work_key, r.task.model_dump_json()) for r in store.iter_records("task", accepted=True))
    dialogues = sorted((d.work_key, d.task_id, tuple((m.role, m.content or "") for m in d.messages))
                       for d in store.accepted_dialogues())
    return tasks, dialogues


def dying_judge(req):  # module-level: the worker processes unpickle it by name
    os._exit(3)


def failing_factory():
    raise RuntimeError("no LM for you")


def test_pool_gives_the_same_accepted_records_as_in_process(tmp_path):
    factory = scripted_roles_factory()
    run(tmp_path / "local", factory)
    with ProcessWorkerPool.start(SPEC, factory, CONFIG, num_workers=2) as pool:
        result = run(tmp_path / "pool", factory, pool)
        assert [w.process.is_alive() for w in pool.workers] == [True, True]
    assert [w.process.is_alive() for w in pool.workers] == [False, False]  # closed: the workers exited
    tasks, dialogues = accepted(tmp_path / "pool")
    assert result.accepted_dialogues == len(dialogues) >= 6
    assert (tasks, dialogues) == accepted(tmp_path / "local")


def test_a_dead_worker_is_a_clear_error_and_the_run_resumes_with_a_pool(tmp_path):
    run(tmp_path / "reference", scripted_roles_factory())
    root = tmp_path / "pool"
    dying = scripted_roles_factory(trajectory_judge=dying_judge)
    with ProcessWorkerPool.start(SPEC, dying, CONFIG, num_workers=2) as pool, \
            pytest.raises(WorkerCrashedError, match=r"item worker \d \(pid \d+\) exited with code 3"):
        run(root, scripted_roles_factory(), pool)
    partial = RunStore.open(root, read_only=True)
    assert len(partial.done_keys("task")) >= 1 and not partial.done_keys("dialogue")  # tasks stored, no episode
    with ProcessWorkerPool.start(SPEC, scripted_roles_factory(), CONFIG, num_workers=2) as pool:
        run(root, scripted_roles_factory(), pool, resume=True)
    assert accepted(root) == accepted(tmp_path / "reference")


def test_a_worker_that_cannot_start_says_why():
    with pytest.raises(WorkerCrashedError, match="could not start: RuntimeError: no LM for you"):
        ProcessWorkerPool.start(SPEC, failing_factory, CONFIG, num_workers=1)


def test_auto_workers_need_many_streams_and_rebuildable_roles():
    many = EngineConfig(streams=64)
    assert worker_count(many, can_rebuild_roles=True) == 4
    assert worker_count(many, can_rebuild_roles=False) == 1  # e.g. the embedded model: loaded once
    assert worker_count(EngineConfig(streams=16), can_rebuild_roles=True) == 2
    assert worker_count(EngineConfig(streams=8), can_rebuild_roles=True) == 1
    assert worker_count(EngineConfig(streams=64, workers=3), can_rebuild_roles=True) == 3
    assert worker_count(EngineConfig(streams=2, workers=8), can_rebuild_roles=True) == 2  # one per stream at most
    with pytest.raises(ValueError, match="in-process"):
        worker_count(EngineConfig(streams=64, workers=2), can_rebuild_roles=False)
    assert concurrency_shares(64, 3) == [22, 21, 21] and sum(concurrency_shares(10, 4)) == 10


def test_scripted_factory_refuses_unpicklable_policies():
    with pytest.raises(TypeError, match="module-level"):
        scripted_roles_factory(user=lambda req: {"message": "hi"})


def test_synth_refuses_worker_processes_for_the_embedded_model(tmp_path):
    from eigendspy.cli import app

    result = CliRunner().invoke(app, ["synth", "--workers", "2", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "in-process" in result.output
    assert not (tmp_path / "run").exists()
