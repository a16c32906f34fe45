"""tau2 results files: ours has tau2's shape (key sets compared with a file tau2 wrote) and both read back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from eigendspy.core.messages import TerminationReason
from eigendspy.core.oracle import OracleAssistant, OracleUser
from eigendspy.core.orchestrator import Episode, Orchestrator
from eigendspy.domains import get_domain
from eigendspy.eval.tau2_results import RunInfo, read_results, write_results
from eigendspy.scoring.checker import Checker

TASK_IDS = ["create_task_1", "update_task_with_message_history", "update_task_with_user_tools"]


@pytest.fixture(scope="module")
def run(tau2_dir, tmp_path_factory):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    tasks = [domain.task(i) for i in TASK_IDS]
    orch = Orchestrator(
        domain,
        OracleAssistant(),
        OracleUser(),
        checker_factory=lambda t: Checker.for_reward(domain, t, tau2_compat=True),
        tau2_compat=True,
    )
    episodes = asyncio.run(orch.run_many(tasks, trials=2))
    path = write_results(
        tmp_path_factory.mktemp("results") / "sub" / "mock_results.json",
        domain,
        tasks,
        episodes,
        RunInfo(agent_llm="oracle", user_llm="oracle", num_trials=2),
    )
    return domain, tasks, episodes, path


@pytest.fixture(scope="module")
def ours(run) -> dict:
    return json.loads(Path(run[3]).read_text())


@pytest.fixture(scope="module")
def ref(tau2_dir) -> dict:
    return json.loads((tau2_dir / "retail" / "results_sample.json").read_text())


def test_the_oracle_run_is_scored(run, tau2_dir):
    _, tasks, episodes, path = run
    lines = (tau2_dir / "mock" / "oracle.jsonl").read_text().splitlines()
    gold = {o["task_id"]: o["trajectories"]["gold"]["reward_info"]["reward"] for o in map(json.loads, lines)}
    assert len(episodes) == 2 * len(tasks)
    assert all(isinstance(e, Episode) for e in episodes)
    assert [(e.task_id, e.trial) for e in episodes] == [(t.id, k) for t in tasks for k in range(2)]
    assert all(e.termination_reason is TerminationReason.USER_STOP for e in episodes)
    # the same rewards tau2 gave its own gold trajectories (1, 1, 0: the user-tools task's gold actions
    # leave out the user's dismiss_notification, so its env assertion fails in tau2 too)
    assert [e.reward for e in episodes] == [gold[e.task_id] for e in episodes] == [1.0] * 4 + [0.0] * 2
    assert path.exists() and not list(path.parent.glob("*.tmp"))


def test_top_level_keys(ours, ref):
    assert set(ours) == set(ref)


def _dict_key_paths(obj, prefix="") -> set[str]:
    """Paths of every key in nested dicts (lists and scalars are leaves)."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(f"{prefix}/{k}")
            out |= _dict_key_paths(v, f"{prefix}/{k}")
    return out


# tau2 may write a sub-config where ours writes null; such a key is still present on both sides
OPTIONAL_SUBCONFIGS = {"/text_streaming_config"}


def test_info_keys_recursively(ours, ref):
    assert set(ours["info"]) == set(ref["info"])
    for key in ("user_info", "agent_info", "environment_info"):
        assert set(ours["info"][key]) == set(ref["info"][key]), key
    ours_paths = _dict_key_paths(ours["info"])
    ref_paths = {
        p for p in _dict_key_paths(ref["info"]) if not any(p.startswith(o + "/") for o in OPTIONAL_SUBCONFIGS)
    }
    assert ours_paths == ref_paths
    for key in OPTIONAL_SUBCONFIGS:
        value = ours["info"][key.strip("/")]
        assert value is None or set(value) == set(ref["info"][key.strip("/")])


def test_info_content(ours, run):
    domain = run[0]
    info = ours["info"]
    assert info["environment_info"]["domain_name"] == "mock"
    assert info["environment_info"]["policy"] == domain.policy
    assert info["agent_info"]["llm"] == "oracle" and info["num_trials"] == 2


def test_simulation_keys(ours, ref):
    ref_keys = set(ref["simulations"][0])
    assert all(set(s) == ref_keys for s in ref["simulations"])
    for sim in ours["simulations"]:
        assert set(sim) == ref_keys


def test_reward_info_keys(ours, ref):
    ref_keys = set(ref["simulations"][0]["reward_info"])
    for sim in ours["simulations"]:
        assert set(sim["reward_info"]) == ref_keys
        assert set(sim["reward_info"]["db_check"]) == set(ref["simulations"][0]["reward_info"]["db_check"])


def test_reward_info_info_has_tau2_shape(ours, ref):
    ref_info = ref["simulations"][0]["reward_info"]["info"]
    for sim in ours["simulations"]:
        info = sim["reward_info"]["info"]
        assert set(info) == set(ref_info)
        assert all(v is None or isinstance(v, dict) for v in info.values())


def _role_keys(results: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for sim in results["simulations"]:
        for m in sim["messages"]:
            keys = set(m)
            # every message of one role has the same key set
            assert out.setdefault(m["role"], keys) == keys, m["role"]
    return out


def test_per_role_message_keys(ours, ref):
    ours_roles, ref_roles = _role_keys(ours), _role_keys(ref)
    assert set(ours_roles) == set(ref_roles) == {"assistant", "user", "tool"}
    for role in ref_roles:
        assert ours_roles[role] == ref_roles[role], role


def test_tool_call_keys_and_task_keys(ours, ref):
    def call_keys(results):
        return {
            k
            for s in results["simulations"]
            for m in s["messages"]
            for c in m.get("tool_calls") or []
            for k in c
        }

    assert call_keys(ours) == call_keys(ref)
    ref_task_keys = set(ref["tasks"][0])
    for task in ours["tasks"]:
        assert ref_task_keys <= set(task)


def test_read_results_reads_ours_back(run):
    _, tasks, episodes, path = run
    loaded_tasks, sims = read_results(path)
    assert [t.id for t in loaded_tasks] == [t.id for t in tasks]
    assert [t.to_tau2() for t in loaded_tasks] == [json.loads(t.model_dump_json()) for t in tasks]
    assert [(s.task_id, s.trial) for s in sims] == [(e.task_id, e.trial) for e in episodes]
    assert [s.reward for s in sims] == [e.reward for e in episodes]
    assert [len(s.messages) for s in sims] == [len(e.messages) for e in episodes]
    assert [s.termination_reason for s in sims] == [e.termination_reason for e in episodes]
    for s, e in zip(sims, episodes, strict=True):
        assert [(m.role, m.content) for m in s.messages] == [(m.role, m.content) for m in e.messages]
        calls = [c for m in s.messages for c in m.tool_calls or []]
        assert [(c.name, c.arguments) for c in calls] == [
            (c.name, c.arguments) for m in e.messages for c in m.tool_calls or []
        ]
    assert len({s.id for s in sims}) == len(sims)


def test_read_results_reads_tau2s_own_file(tau2_dir):
    tasks, sims = read_results(tau2_dir / "retail" / "results_sample.json")
    raw = json.loads((tau2_dir / "retail" / "results_sample.json").read_text())
    assert len(sims) == 6
    assert [s.reward for s in sims] == [s["reward_info"]["reward"] for s in raw["simulations"]]
    assert [s.reward for s in sims] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert [s.task_id for s in sims] == ["0", "0", "1", "1", "6", "6"]
    assert [len(s.messages) for s in sims] == [len(s["messages"]) for s in raw["simulations"]]
    assert all(s.termination_reason is TerminationReason.USER_STOP for s in sims)
    assert {t.id for t in tasks} == {"0", "1", "6"}
    assert [t.to_tau2() for t in tasks] == raw["tasks"]


def test_read_results_rejects_a_non_results_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"tasks": [], "simulations": []}))
    with pytest.raises(ValueError, match="info"):
        read_results(path)
