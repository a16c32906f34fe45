"""The RL stack imports on a GPU box that has torch/transformers/peft but no DSPy or LiteLLM."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import importlib, pkgutil, sys
for name in ("dspy", "litellm"):
    sys.modules[name] = None  # any import of them now raises ImportError
import eigendspy.train
failed = []
for info in pkgutil.walk_packages(eigendspy.train.__path__, "eigendspy.train."):
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed.append(f"{info.name}: {exc}")
# what scripts/gpu_check.py imports besides eigendspy.train
import eigendspy.testing.tiny_model, eigendspy.core.oracle, eigendspy.domains.retail.demo, eigendspy.engine.export
assert not failed, failed
print(len(list(pkgutil.walk_packages(eigendspy.train.__path__, "eigendspy.train."))))
"""


def test_every_train_module_imports_without_dspy() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) >= 10  # the walk really saw the train package
