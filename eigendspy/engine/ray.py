"""Scale-out: run the engine's items (task making, episodes) on a Ray cluster.

The driver keeps everything order-dependent — plans, filters, the store — and Ray actors do the
LM-bound item work with the same `ItemWorker` code the in-process engine uses, so results are
identical to a local run with the same seeds. Each actor builds its domain once (from the same
``get_domain`` arguments) and its roles once, from a picklable factory (LM clients hold locks and
connections that must not be pickled). Roles that start from compiled programs (``compiled``, evolve's
``OUT/compiled``) are loaded into each actor's roles too: the files' bytes travel with the actor, since a
cluster's nodes need not see the driver's disk.

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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eigendspy.core.records import DialogueRecord, TaskRecord

if TYPE_CHECKING:
    from eigendspy.core.plans import PlanPair
    from eigendspy.engine.config import EngineConfig, Roles
    from eigendspy.lm.config import RoleLMConfig

DomainSpec = tuple[str, str | None, dict[str, Any]]
"""(domain name, tau2 data dir or None, extra ``get_domain`` keyword arguments)."""
CompiledSnapshot = dict[str, bytes]
"""The bytes of each compiled ``<role>.json``, by role name."""


def roles_from_config(lm_config: RoleLMConfig) -> Roles:
    """A picklable roles factory for real LMs (use with ``functools.partial``)."""
    from eigendspy.engine.config import Roles
    from eigendspy.lm.config import build_role_lms

    return Roles.from_lms(build_role_lms(lm_config))


class _Actor:
    """Lives in a Ray worker process: one domain, one set of roles, one `ItemWorker`."""

    def __init__(self, domain_spec: DomainSpec, roles_factory: Callable[[], Roles], config: EngineConfig,
                 compiled: CompiledSnapshot | None = None) -> None:
        from eigendspy.domains import get_domain
        from eigendspy.engine.items import ItemWorker

        name, data_dir, kwargs = domain_spec
        roles = roles_factory()
        if compiled:
            with tempfile.TemporaryDirectory() as folder:  # the same loader as the driver's: DSPy's module.load
                for role, data in compiled.items():
                    (Path(folder) / f"{role}.json").write_bytes(data)
                roles.load_compiled(folder)
        self.worker = ItemWorker(get_domain(name, data_dir=data_dir, **kwargs), roles, config)

    async def make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> str:
        record = await self.worker.make_task(stream, r, key, plan)
        return record.model_dump_json()

    async def episode(self, rec_json: str, trial: int, key: str) -> str:
        record = await self.worker.episode(TaskRecord.model_validate_json(rec_json), trial, key)
        return record.model_dump_json()


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

        from eigendspy.engine.config import compiled_files

        snapshot = ({role: path.read_bytes() for role, path in compiled_files(compiled).items()}
                    if compiled is not None else None)

        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
            except ConnectionError:
                ray.init(include_dashboard=False, ignore_reinit_error=True)  # "auto" found no cluster
        n = num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=0.5, max_concurrency=max_concurrency or config.concurrency)(_Actor)
        return cls([remote.remote(domain_spec, roles_factory, config, snapshot) for _ in range(n)])

    async def make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> TaskRecord:
        actor = next(self._next)
        return TaskRecord.model_validate_json(await actor.make_task.remote(stream, r, key, plan))

    async def episode(self, rec: TaskRecord, trial: int, key: str) -> DialogueRecord:
        actor = next(self._next)
        return DialogueRecord.model_validate_json(await actor.episode.remote(rec.model_dump_json(), trial, key))

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
