"""Scale-out: run the engine's items (task making, episodes) on a Ray cluster.

The driver keeps everything order-dependent — plans, filters, the store — and Ray actors do the
LM-bound item work with the same `ItemWorker` code the in-process engine uses, so results are
identical to a local run with the same seeds. Each actor builds its domain once (from the same
``get_domain`` arguments) and its roles once, from a picklable factory (LM clients hold locks and
connections that must not be pickled). Roles that start from compiled programs (``compiled``, evolve's
``OUT/compiled``) are loaded into each actor's roles too: the files' bytes travel with the actor, since a
cluster's nodes need not see the driver's disk. The actor is `eigendspy.engine.remote_items.RemoteItems`, the
same worker local processes run (`eigendspy.engine.processes.ProcessWorkerPool`, the default on one machine).

```python
factory = functools.partial(roles_from_config, RoleLMConfig.from_toml("roles.toml"))
roles = factory()
roles.load_compiled("runs/evolve/compiled")
pool = RayWorkerPool.start(("mock", None, {}), factory, config, compiled="runs/evolve/compiled")
engine = DataEngine(domain, roles, store, config, worker=pool)
```
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eigendspy.core.records import DialogueRecord, TaskRecord
from eigendspy.engine.remote_items import (
    CompiledSnapshot,
    DomainSpec,
    RemoteItems,
    roles_from_config,
    snapshot_compiled,
)

if TYPE_CHECKING:
    from eigendspy.core.plans import PlanPair
    from eigendspy.engine.config import EngineConfig, Roles

__all__ = ["CompiledSnapshot", "DomainSpec", "RayWorkerPool", "roles_from_config"]


class RayWorkerPool:
    """Round-robin over Ray actors; exposes the same two async methods as `ItemWorker`."""

    def __init__(self, actors: list[Any]) -> None:
        if not actors:
            raise ValueError("a Ray worker pool needs at least one actor")
        self.actors = actors
        self._next = itertools.cycle(actors)

    @classmethod
    def start(cls, domain_spec: DomainSpec, roles_factory: Callable[[], Roles], config: EngineConfig, *,
              compiled: str | Path | None = None, address: str | None = "auto",
              num_workers: int | None = None, max_concurrency: int | None = None) -> RayWorkerPool:
        """Connect to (or start) Ray and create ``num_workers`` actors (default: the cluster's CPUs).

        Args:
            compiled: A folder of compiled ``<role>.json`` programs (`Roles.load_compiled`) that every
                actor loads into the roles its factory builds — the driver's roles should load the same.
            address: ``"auto"`` joins a running cluster or starts a local one; or a ``ray://`` address.

        Raises:
            FileNotFoundError: ``compiled`` holds no ``<role>.json`` (checked before any actor starts).
        """
        import ray

        snapshot = snapshot_compiled(compiled)

        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
            except ConnectionError:
                ray.init(include_dashboard=False, ignore_reinit_error=True)  # "auto" found no cluster
        n = num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=0.5, max_concurrency=max_concurrency or config.concurrency)(RemoteItems)
        return cls([remote.remote(domain_spec, roles_factory, config, snapshot) for _ in range(n)])

    async def make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> TaskRecord:
        actor = next(self._next)
        return TaskRecord.model_validate_json(await actor.make_task.remote(stream, r, key, plan.model_dump_json()))

    async def episode(self, rec: TaskRecord, trial: int, key: str) -> DialogueRecord:
        actor = next(self._next)
        return DialogueRecord.model_validate_json(await actor.episode.remote(rec.model_dump_json(), trial, key))

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
