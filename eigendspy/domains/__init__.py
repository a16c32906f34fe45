"""Built-in domains. ``get_domain("retail", data_dir=...)`` loads one, optionally over tau2 data."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from eigendspy.core.domain import Domain

BUILTIN = ("mock", "retail", "airline", "telecom")


def get_domain(name: str, data_dir: str | Path | None = None, **kwargs: Any) -> Domain:
    """Load a built-in domain by name.

    Args:
        name: One of `BUILTIN`.
        data_dir: A tau2-bench domain directory to overlay (policy, DBs, tasks, splits).
        **kwargs: Passed to the domain's ``load_domain`` (e.g. ``seed`` for the DB generator).
    """
    if name not in BUILTIN:
        raise KeyError(f"unknown domain {name!r}; built-in domains: {', '.join(BUILTIN)}")
    module = importlib.import_module(f"eigendspy.domains.{name}")
    domain = module.load_domain(data_dir=data_dir, **kwargs)
    domain.options = dict(kwargs)
    return domain
