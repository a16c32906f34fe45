"""Shared fixtures: DSPy isolation (as DSPy's own tests do) and the tau2 reference data."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Every test environment runs read-only tools on private copies and fails loudly if one writes.
os.environ.setdefault("EIGENDSPY_GUARD_READS", "1")

import copy  # noqa: E402

import dspy  # noqa: E402
import pytest  # noqa: E402
from dspy.dsp.utils.settings import DEFAULT_CONFIG  # noqa: E402


def _find_tau2() -> Path:
    """tau2 reference data: $EIGENDSPY_TAU2_SHARED, else ../shared/tau2 next to the checkout."""
    if os.environ.get("EIGENDSPY_TAU2_SHARED"):
        return Path(os.environ["EIGENDSPY_TAU2_SHARED"])
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "tau2"
        if (candidate / "README.md").exists():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "tau2"


TAU2_DIR = _find_tau2()


@pytest.fixture(autouse=True)
def reset_dspy():
    """Fresh DSPy settings and a memory-only cache for every test."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
    yield
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


@pytest.fixture(scope="session")
def tau2_dir() -> Path:
    if not (TAU2_DIR / "README.md").exists():
        pytest.skip(f"tau2 reference data not found at {TAU2_DIR}")
    return TAU2_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen2 chat model + local BPE tokenizer with TRL's qwen2_5 template, built once (~4 s)."""
    from eigendspy.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
