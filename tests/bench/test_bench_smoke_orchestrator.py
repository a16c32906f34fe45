"""Smoke test of the orchestrator benchmark: tiny settings, real worker processes, sane JSON."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from benchmarks import bench_orchestrator
from eigendspy.agents import Assistant, UserSimulator
from eigendspy.core.orchestrator import Orchestrator
from eigendspy.testing.lm import scripted_lm

RUN_KEYS = {
    "mode", "processes", "latency_s", "episodes", "concurrency", "calls", "calls_per_episode", "terminations",
    "all_user_stop", "wall_s", "ideal_s", "ideal_flow_s", "ratio", "calls_per_s", "cpu_s", "cpu_ms_per_call",
    "engine_cpu_ms_per_call", "cpu_ms_per_call_excl_engine",
}


def test_benchmark_main_writes_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    started = time.monotonic()
    result = bench_orchestrator.main(["--episodes", "8", "--latency", "0.01", "--workers", "2",
                                      "--concurrency", "4", "--json", str(out)])
    assert time.monotonic() - started < 15
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {"settings", "runs", "capacity", "target_ratio", "target_met", "machine"} <= set(data)
    assert set(data["runs"]) == {"single", "workers", "single_overhead", "workers_overhead"}
    for name, run in data["runs"].items():
        assert RUN_KEYS <= set(run), name
        assert run["calls"] > 0 and run["cpu_ms_per_call"] > 0 and run["wall_s"] > 0
        # the scripted engine's own CPU is part of the process's, reported apart
        assert 0 < run["engine_cpu_ms_per_call"] < run["cpu_ms_per_call"]
        excl = run["cpu_ms_per_call"] - run["engine_cpu_ms_per_call"]
        assert run["cpu_ms_per_call_excl_engine"] == pytest.approx(excl)
        assert run["episodes"] == 8 and run["terminations"] == {"user_stop": 8} and run["all_user_stop"]
        assert run["calls_per_episode"] == bench_orchestrator.TURNS  # no adapter retries (JSON fallback)
        assert run["calls_equal_turns"]
    for name in ("single", "workers"):
        assert 0 < data["runs"][name]["ratio"] <= 1.5
        assert data["runs"][name]["ideal_s"] > 0
    assert data["runs"]["workers"]["processes"] == 2
    assert data["capacity"]["cpu_ms_per_call_zero_latency"] > 0
    targets = data["issue_targets"]
    assert set(targets) == set(bench_orchestrator.ISSUE_TARGETS)
    assert targets["cpu_ms_per_call"]["value"] == max(r["cpu_ms_per_call"] for r in data["runs"].values())
    workers_target = bench_orchestrator.ISSUE_TARGETS["workers_ratio"]
    assert targets["workers_ratio"]["met"] == (data["runs"]["workers"]["ratio"] >= workers_target)


def test_scripted_dialogue_on_the_builtin_domain_calls_real_tools_without_errors(monkeypatch):
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)
    runner = bench_orchestrator.Runner(bench_orchestrator.domain_spec(builtin=True), 8)
    assert "simple tasks" in runner.task_source
    orch = Orchestrator(runner.domain, Assistant(lm=scripted_lm(bench_orchestrator.assistant_policy)),
                        UserSimulator(lm=scripted_lm(bench_orchestrator.user_policy(runner.plans))))
    for episode in asyncio.run(orch.run_many(runner.tasks, concurrency=4)):
        calls = [c.name for m in episode.messages for c in (m.tool_calls or [])]
        assert calls == ["find_user_id_by_name_zip", "get_user_details", "get_order_details",
                         "get_product_details", "calculate"]
        assert episode.num_errors == 0  # the built-in tasks are self-consistent
        assert episode.termination_reason.value == "user_stop"
