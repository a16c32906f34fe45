"""Smoke test of the memory benchmark: tiny settings, both modes in their own processes, sane JSON."""

from __future__ import annotations

import json

from benchmarks import bench_memory


def test_memory_benchmark_writes_both_modes_and_only_old_retains(tmp_path):
    out = tmp_path / "memory.json"
    result = bench_memory.main(["--episodes", "4", "--batches", "2", "--concurrency", "4", "--builtin",
                                "--out", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert data["episodes_per_batch"] == 4 and data["batches"] == 2
    old, new = data["old"], data["new"]
    assert old["keep_lm_history"] and not new["keep_lm_history"]
    for mode in (old, new):
        assert [b["batch"] for b in mode["batches"]] == [1, 2]
        assert all(b["terminations"] == ["user_stop"] and b["calls"] > 0 for b in mode["batches"])
        assert len(mode["growth_after_first_mb"]) == 1
    calls = old["batches"][0]["calls"]
    assert [b["retained"]["trace"] for b in old["batches"]] == [calls, 2 * calls]  # DSPy's defaults: all kept
    assert [b["retained"]["global_history"] for b in old["batches"]] == [calls, 2 * calls]
    assert all(v == 0 for b in new["batches"] for v in b["retained"].values())
    assert old["growth_after_first_mb"][0] > new["growth_after_first_mb"][0]
    assert data["passed"] == (new["max_growth_after_first_mb"] < bench_memory.MAX_GROWTH_MB)
