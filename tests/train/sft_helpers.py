"""A real data-engine run (scripted roles, built-in mock domain) for SFT tests, plus a small config builder.

Why a real run rather than hand-made rows: SFT must train on what ``eigendspy synth`` writes and
``eigendspy export`` reads back, including the run-directory path of `SFTRunConfig`. The scripted
roles make it deterministic and take ~2 s; no tau2 data is needed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.roles import scripted_roles
from eigendspy.train.sft import SFTRunConfig


def make_engine_run(run_dir: Path, seed: int = 3) -> Path:
    """Run the engine on the mock domain (2 streams x 2 tasks, 1 episode each) into ``run_dir``."""
    domain = get_domain("mock", num_users=8, tasks_per_user=5)
    config = EngineConfig(domain="mock", streams=2, rounds=1, tasks_per_round=2, episodes_per_task=1, seed=seed)
    store = RunStore.create(run_dir, RunManifest(config=config, seed=seed, domain="mock"))
    try:
        result = asyncio.run(DataEngine(domain, scripted_roles(), store, config).run())
    finally:
        store.close()
    assert result.accepted_dialogues >= 2, "the scripted engine run accepted too few dialogues to train on"
    return run_dir


def tiny_config(model_dir: Path, output_dir: Path, **overrides: Any) -> SFTRunConfig:
    """A fast CPU config for the tiny model: a few steps, batch 1, a learning rate that moves the adapter."""
    values: dict[str, Any] = dict(model=str(model_dir), output_dir=output_dir, max_steps=2, save_steps=2,
                                  per_device_train_batch_size=1, gradient_accumulation_steps=1,
                                  learning_rate=1e-2, warmup_steps=0, max_length=None, logging_steps=1,
                                  report_to=[], use_cpu=True, activation_checkpointing=False)
    values.update(overrides)
    return SFTRunConfig(**values)
