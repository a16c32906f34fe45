"""Smoke test of the rollout benchmark: quick mode (tiny model, a handful of episodes, one GRPO step), sane JSON.

Checks structure and plausibility, never timings beyond a generous bound (the machine is shared).
"""

from __future__ import annotations

import json
import threading
import time

from benchmarks import bench_rollout
from eigendspy.core.environment import Environment
from eigendspy.scoring.checker import Checker


def test_quick_benchmark_writes_sane_json(tmp_path):
    originals = (Environment.__dict__["for_task"], Environment.execute, Environment.sync, Checker.score)
    out = tmp_path / "rollout.json"
    started = time.monotonic()
    result = bench_rollout.main(["--quick", "--json", str(out)])
    assert time.monotonic() - started < 60  # ~20 s on 2 lightly loaded cores (four rollout runs, a GRPO step)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(result))
    assert {"machine", "settings", "model", "runs", "ratios", "same_ids", "grpo", "oracle", "target", "prefix_target",
            "phases_s"} <= set(data)
    low, high = data["settings"]["concurrency"]
    assert set(data["runs"]) == set(bench_rollout.MODES) == {"no_reuse", "reuse"}
    for mode, by_c in data["runs"].items():
        assert set(by_c) == {f"c{low}", f"c{high}"}
        for name, run in by_c.items():
            assert run["prefix_reuse"] == (mode == "reuse") and run["concurrency"] == int(name[1:])
            assert run["episodes"] == data["settings"]["episodes"] and run["skipped"] == 0, name
            assert run["wall_s"] > 0 and run["policy_tokens"] > 0 and run["policy_tokens_per_s"] > 0
            # a random policy (almost) never stops: each turn samples max_new_tokens, so runs generate about as much
            full = run["policy_turns"] * data["settings"]["max_new_tokens"]
            assert 0.8 * full <= run["policy_tokens"] <= full
            assert run["terminations"] == ["max_steps"]
            assert run["timers"]["calls"]["user"] > 0 and run["timers"]["calls"]["checker"] == run["episodes"]
            assert 0 < run["fraction_of_wall"]["generate"] <= 1.0
            assert 0 < run["user_env_checker_fraction"] < 0.5
            assert run["reused_tokens"] == run["prompt_tokens"] - run["prefill_tokens"]
        assert by_c[f"c{high}"]["mean_batch"] > 1.0 == by_c[f"c{low}"]["mean_batch"]
        assert by_c[f"c{low}"]["policy_turns"] == by_c[f"c{high}"]["policy_turns"]
    # without reuse every prompt token is prefilled; with it, turns after the first and shared system prompts are not
    assert all(r["prefill_tokens"] == r["prompt_tokens"] for r in data["runs"]["no_reuse"].values())
    assert all(r["prefill_tokens"] < 0.5 * r["prompt_tokens"] for r in data["runs"]["reuse"].values())
    # seeded sampling, the same requests: reuse samples the same ids (c1 batches are identical by construction)
    assert data["same_ids"][f"c{low}"] is True
    assert all(r > 0 for mode in ("no_reuse", "reuse") for r in data["ratios"][mode].values())
    assert set(data["ratios"]["reuse_vs_no_reuse"]) == {f"c{low}", f"c{high}"}
    target = data["prefix_target"]
    assert target["min_ratio"] == bench_rollout.TARGET_RATIO and isinstance(target["met"], bool)
    assert target["measured"] == data["ratios"]["reuse"]["policy_tokens_per_s"]
    grpo = data["grpo"]
    assert grpo["steps"] == data["settings"]["grpo_steps"]
    assert 0 < grpo["rollout_fraction_of_step"] < 1 and 0 < grpo["generate_fraction_of_rollout"] <= 1
    assert 0 < grpo["env_checker_fraction_of_step"] < grpo["user_env_checker_fraction_of_step"] < 0.5
    oracle = data["oracle"]
    assert oracle["mean_reward"] == 1.0 and oracle["tool_calls_per_episode"] >= 1
    assert oracle["timers"]["calls"]["environment"] > 0
    target = data["target"]
    assert target["env_checker_fraction_max"] == bench_rollout.TARGET_FRACTION and target["basis"] == "grpo step"
    assert isinstance(target["met"], bool) and target["measured"] == grpo["env_checker_fraction_of_step"]
    # the instrumentation is gone afterwards
    assert (Environment.__dict__["for_task"], Environment.execute, Environment.sync, Checker.score) == originals


def test_nested_timed_calls_count_once_per_thread():
    timers = bench_rollout.Timers()

    def work() -> None:
        with timers.section("checker"):
            with timers.section("environment"):  # e.g. the checker replaying tool calls
                time.sleep(0.01)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert timers.calls == {"user": 0, "environment": 0, "checker": 3}
    assert timers.wall["checker"] >= 0.03 and timers.wall["environment"] == 0.0
