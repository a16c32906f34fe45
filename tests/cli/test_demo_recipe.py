"""`eigendspy demo` as a new user runs it: a fresh process, the embedded model, offline, the whole pipeline.

Sized down (4 tasks in 2 plan cells, 3 SFT steps, 1 trial) so it fits CI, which fetches the model first
(`.ci/test`); the README's default size is measured there. What must hold at any size: at least one accepted
dialogue exported, none of the exported dialogues failing the deterministic pre-checks, a trained adapter,
base and SFT evaluated on held-out tasks, and report.md with two exported rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from eigendspy.agents.trajectory_prechecks import dialogue_findings
from eigendspy.domains import get_domain
from eigendspy.engine.export import read_records
from eigendspy.recipe import PRESETS, RecipeResult


def _model_or_skip() -> None:
    from eigendspy.lm.local.fetch import ModelNotFetchedError, locate_gguf

    try:
        locate_gguf()
    except ModelNotFetchedError:
        pytest.skip("embedded model not fetched: run `eigendspy model fetch`")


def test_demo_runs_the_recipe_end_to_end_on_the_embedded_model(tmp_path):
    _model_or_skip()
    out = tmp_path / "demo"
    env = {**os.environ, "EIGENDSPY_TAU2_SHARED": str(tmp_path / "no-tau2")}  # offline, no tau2 data needed
    proc = subprocess.run(
        [sys.executable, "-m", "eigendspy.cli", "demo", "--out", str(out), "--tasks", "4", "--streams", "2",
         "--sft-steps", "3", "--trials", "1", "--threads", "2"],
        capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "pass^1 on held-out tasks" in proc.stdout and "report.md" in proc.stdout

    from datasets import load_from_disk

    rows = load_from_disk(str(out / "split" / "export" / "sft_agent"))
    assert len(rows) >= 1
    assert (out / "sft_agent" / "adapter" / "adapter_model.safetensors").stat().st_size > 0
    result = RecipeResult.model_validate_json((out / "recipe.json").read_text())
    assert result.preset == "demo" and {e.column for e in result.evals} == {"base", "sft", "teacher"}
    assert {e.held_out for e in result.evals} == {"synth"}

    domain = get_domain("mock", **PRESETS["demo"].domain_options)
    tasks, dialogues = read_records(result.synthesis["run_dir"])
    by_task = {t.task.id: t.task for t in tasks if t.task is not None}
    exported = set(rows["task_id"])
    for record in dialogues:
        if record.task_id in exported and record.accepted:
            findings = dialogue_findings(by_task[record.task_id], record.messages, domain)
            assert not [f for f in findings if f.decisive], (record.task_id, findings)

    report = (out / "report.md").read_text()
    assert "| base | synth |" in report and "| sft | synth |" in report
    assert report.split("## Two exported rows", 1)[1].count("task `") == min(2, len(rows))
    card = json.loads((out / "split" / "export" / "card.json").read_text())
    assert card["counts"]["sft_agent"] == len(rows)
