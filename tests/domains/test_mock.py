"""Mock domain: tau2 probe conformance, schemas, and the built-in generator."""

from __future__ import annotations

import json

from eigendspy.core.environment import Environment
from eigendspy.core.messages import ToolCall
from eigendspy.domains import get_domain
from eigendspy.domains.mock import generate_db
from tests.domains.probes import replay_probes


def test_every_probe_sequence_matches_tau2(tau2_dir):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    assert replay_probes(domain, tau2_dir / "mock" / "probe_oracle.jsonl") == 128


def test_schemas_and_kinds_equal_tau2(tau2_dir):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    want = json.loads((tau2_dir / "mock" / "tool_schemas.json").read_text())
    assert domain.tool_schemas("assistant") == want["assistant"]
    assert domain.tool_schemas("user") == want["user"]
    assert domain.toolkit.tool_meta() == want["tool_meta"]["assistant"]
    assert domain.user_toolkit.tool_meta() == want["tool_meta"]["user"]


def test_builtin_generator_is_seeded_and_usable(monkeypatch):
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)
    assert generate_db(3) == generate_db(3)
    assert generate_db(3) != generate_db(4)
    domain = get_domain("mock", seed=3)
    env = Environment(domain)
    msg = env.execute(ToolCall(name="create_task", arguments={"user_id": "user_1", "title": "Plan"}))
    assert not msg.error and json.loads(msg.content)["task_id"] == "task_7"
    assert "Tasks are never deleted" in domain.policy
