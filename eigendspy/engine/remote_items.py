"""An `ItemWorker` built inside another process, spoken to in JSON: what Ray actors and local worker
processes (`eigendspy.engine.processes`) both run.

Why one module: both scale-outs must build the worker the same way — the domain from the same
``get_domain`` arguments, the roles from a picklable factory (LM clients hold locks and connections
that must not be pickled), compiled programs loaded from their bytes (a remote node need not see the
driver's disk) — or their results would drift from the in-process engine's. Records cross the process
boundary as pydantic JSON, the engine's own storage format, so a record is exactly what it would be
in-process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eigendspy.core.plans import PlanPair
from eigendspy.core.records import TaskRecord

if TYPE_CHECKING:
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


def snapshot_compiled(compiled: str | Path | None) -> CompiledSnapshot | None:
    """The bytes of the compiled ``<role>.json`` programs in ``compiled`` (None: no compiled roles).

    Raises:
        FileNotFoundError: ``compiled`` holds no ``<role>.json`` (checked before any worker starts).
    """
    if compiled is None:
        return None
    from eigendspy.engine.config import compiled_files

    return {role: path.read_bytes() for role, path in compiled_files(compiled).items()}


class RemoteItems:
    """One domain, one set of roles, one `ItemWorker`, built once in the process that runs the items.

    ``make_task`` and ``episode`` take and return JSON strings (``PlanPair``/``TaskRecord`` in,
    ``TaskRecord``/``DialogueRecord`` out) so any transport can carry them.
    """

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

    async def make_task(self, stream: int, r: int, key: str, plan_json: str) -> str:
        record = await self.worker.make_task(stream, r, key, PlanPair.model_validate_json(plan_json))
        return record.model_dump_json()

    async def episode(self, rec_json: str, trial: int, key: str) -> str:
        record = await self.worker.episode(TaskRecord.model_validate_json(rec_json), trial, key)
        return record.model_dump_json()
