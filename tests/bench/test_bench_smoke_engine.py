"""Smoke test of the engine benchmark: tiny settings, both schedules of the real DataEngine, sane JSON."""

from __future__ import annotations

import json

from benchmarks import bench_engine

ROLES = {"planner", "generator", "task_validator", "user", "assistant", "trajectory_validator"}


def test_benchmark_main_writes_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    result = bench_engine.main(["--streams", "4", "--concurrency", "4", "--latency", "0.01", "--tasks-per-round", "2",
                                "--num-users", "60", "--workers", "2", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {"settings", "machine", "modes", "same_accepted_set", "profile", "funnel", "targets"} <= set(data)

    pool, local = data["modes"]["processes (default)"], data["modes"]["in-process"]
    assert pool["workers"] == 2 and local["workers"] == 1 and local["startup_s"] == 0
    assert pool["startup_s"] > 0  # the workers' start-up is measured (in-process has none to measure)
    for mode in (pool, local):
        assert set(mode["lm_requests_by_role"]) == ROLES  # one round: no reflector
        assert mode["lm_requests_by_role"]["planner"] == 1
        assert mode["lm_requests"] == sum(mode["lm_requests_by_role"].values())
        assert 1 <= mode["accepted_dialogues"] <= 8 and mode["wall_s"] > 0
        u = mode["utilisation"]
        for key in ("whole_run", "items"):
            assert 0 < u[key] <= 1.0 + 1e-9, key
        assert u["items"] <= u["role_calls_open"] + 1e-9  # an LM request runs inside a role call
        assert u["peak_in_flight"] <= 4  # request slots, split over the workers, add up to the configured concurrency
    assert pool["lm_requests_by_role"] == local["lm_requests_by_role"]  # the same work, wherever it ran
    assert data["same_accepted_set"]["identical"] and data["targets"]["same_accepted_set"]
    assert data["same_accepted_set"]["accepted_dialogues"] == local["accepted_dialogues"]

    funnel = data["funnel"]
    assert [row["stage"] for row in funnel] == [stage for stage, _ in bench_engine.FUNNEL]
    assert funnel[0]["in"] == 8 and funnel[-1]["out"] == local["accepted_dialogues"]

    profiles = data["profile"]
    assert set(profiles) == {"processes (default): driver", "processes (default): workers", "in-process: driver"}
    for prof in profiles.values():
        assert abs(sum(prof["share_by_owner"].values()) - 1) < 1e-6
        assert 0 < prof["engine_share"] <= prof["eigendspy_share"] < 1
    assert profiles["in-process: driver"]["dspy_share"] > 0.2  # the DSPy calls run here in-process...
    assert profiles["processes (default): workers"]["dspy_share"] > 0.2  # ...and in the workers with a pool
    assert isinstance(data["targets"]["utilisation_met"], bool)
