"""Lazy re-exports for packages whose modules pull heavy optional dependencies (torch, trl, DSPy).

Why: ``import eigendspy.train`` must work on a GPU box without DSPy, and ``import eigendspy`` must not
load torch; yet each package should still export its public names from its ``__init__``. A package
declares ``{name: module}`` and gets a PEP 562 ``__getattr__`` that imports on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` that import ``table[name]`` on first access.

    Args:
        package: The importing package's ``__name__`` (names the package in errors).
        table: Public name -> absolute module path that defines it.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(table) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
