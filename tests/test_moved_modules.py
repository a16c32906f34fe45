"""Pre-layering module paths keep working for one release, as the same module objects, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import eigendspy


@pytest.mark.parametrize("old", sorted(eigendspy.MOVED_MODULES))
def test_old_path_is_the_new_module(old: str) -> None:
    new = eigendspy.MOVED_MODULES[old]
    assert importlib.import_module(new).__name__ == new
    if old in sys.modules:
        assert sys.modules[old] is sys.modules[new]
        return
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_readme_quickstart_paths_import_in_a_fresh_process() -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from eigendspy.domains import get_domain\n"
        "from eigendspy.scoring import Checker\n"
        "from eigendspy.core import Orchestrator, OracleAssistant, OracleUser\n"
        "from eigendspy import Checker as C, ScriptedLM\n"
        "assert C is Checker\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
