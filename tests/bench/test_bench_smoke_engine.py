"""Smoke test of the engine benchmark: tiny settings, the real DataEngine on scripted roles, sane JSON."""

from __future__ import annotations

import json
import time

from benchmarks import bench_engine

ROLES = {"planner", "generator", "task_validator", "user", "assistant", "trajectory_validator"}


def test_benchmark_main_writes_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    started = time.monotonic()
    result = bench_engine.main(["--streams", "4", "--concurrency", "4", "--latency", "0.01", "--tasks-per-round", "2",
                                "--repeats", "1", "--num-users", "60", "--json", str(out)])
    assert time.monotonic() - started < 20
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {"settings", "machine", "run", "calls", "tokens", "yield", "utilisation", "overhead", "targets"} <= set(data)

    run, calls = data["run"], data["calls"]
    acc = run["accepted_dialogues"]
    assert 1 <= acc <= 8 and run["wall_s"] > 0
    assert set(calls["lm_requests_by_role"]) == ROLES  # one round: no reflector
    assert calls["lm_requests_by_role"]["planner"] == 1
    assert calls["lm_requests"] == sum(calls["lm_requests_by_role"].values())
    assert calls["per_accepted_dialogue"] == calls["lm_requests"] / acc >= 5  # >= user, assistant x2, judge
    assert calls["lm_requests"] >= sum(calls["engine_calls_by_role"].values())  # planner is not stored

    tokens = data["tokens"]
    assert tokens["reported_total"] > 0 and tokens["per_accepted_dialogue_reported"] > 0
    assert tokens["recorded_total"] <= tokens["reported_total"]

    funnel = data["yield"]["funnel"]
    assert [row["stage"] for row in funnel] == [stage for stage, _ in bench_engine.FUNNEL]
    assert funnel[0]["in"] == 8 and funnel[-1]["out"] == acc  # 4 streams x 2 tasks in, accepted dialogues out
    assert all(row["out"] <= row["in"] for row in funnel)

    u = data["utilisation"]
    for key in ("whole_run", "steady_state", "client_steady_state", "slots_steady_state"):
        assert 0 < u[key] <= 1.0 + 1e-9, key
    assert u["whole_run"] <= u["steady_state"] + 1e-9  # startup and teardown only add idle time
    assert u["peak_in_flight"] <= 4
    assert 0 < u["ceilings"]["waves"] <= 1 and 0 < u["ceilings"]["pipelined"] <= 1
    assert any(s["segment"].endswith("filter+store") for s in u["segments"])
    assert u["what_if_pipelined"]["accepted_dialogues"] >= 1
    assert 0 < u["what_if_pipelined"]["whole_run"] <= 1.0 + 1e-9

    o = data["overhead"]
    assert o["lm_time_s"] == calls["lm_requests"] * 0.01
    assert len(o["total_cpu_s"]) == len(o["dspy_calls_cpu_s"]) == 1
    assert 0 < o["dspy_calls_cpu_s"][0] and 0 < o["total_cpu_s"][0]
    assert o["engine_pct_of_lm_time"] is not None and o["same_workload_in_every_run"]
    shares = o["profile"]["share_by_owner"]
    assert abs(sum(shares.values()) - 1) < 1e-6 and shares.get("unattributed", 0) < 0.05
    assert shares["dspy (adapter, LM client)"] > 0.2 and o["profile"]["eigendspy_share"] > 0
    assert isinstance(data["targets"]["utilisation_met"], bool) and isinstance(data["targets"]["overhead_met"], bool)
