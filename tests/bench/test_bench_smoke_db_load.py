"""Smoke test of the DB-load benchmark: tiny scales, sane JSON, old and new paths agree."""

from __future__ import annotations

import json

from benchmarks import bench_db_load


def test_growth_exponent_reads_linear_and_quadratic():
    assert bench_db_load.growth_exponent([1, 10, 100], [0.5, 5.0, 50.0]) == 1.0
    assert bench_db_load.growth_exponent([1, 10, 100], [1.0, 100.0, 10000.0]) == 2.0
    assert bench_db_load.growth_exponent([1], [1.0]) is None


def test_benchmark_main_writes_sane_json(tmp_path):
    out = tmp_path / "db_load.json"
    result = bench_db_load.main(["--scales", "1", "2", "--retail-scale", "1", "--heap", "1000", "--repeats", "1",
                                 "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {"settings", "machine", "retail", "retail_big_heap", "airline", "generator"} <= set(data)
    for row in (data["retail"], data["retail_big_heap"], *data["airline"].values()):
        assert row["same_model"] is True and row["mb"] > 0
        assert {"old_gc_on", "new"} <= set(row) and row["new"]["parse_ms"] > 0
    assert set(data["airline"]) == {"1x", "2x"} and data["airline"]["2x"]["mb"] > data["airline"]["1x"]["mb"]
    generator = data["generator"]
    assert len(generator["new_s"]) == 2 and isinstance(generator["exponent_new"], float)
    assert generator["baseline_s"] == {} and generator["exponent_baseline"] is None
