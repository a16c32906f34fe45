"""The data engine with the LLM judges off: a dialogue failing a pre-check is never accepted.

This is the embedded-model setting (``llm_judges=False``): only the checker and the deterministic
pre-checks stand between a rollout and the exported data. Scripted retail roles play it; the
assistant's policy is swapped for one that skips the authentication lookup or chatters.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from eigendspy.core.records import Stage
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls
from eigendspy.testing.roles import scripted_roles


def _steps(dialogue: str, lookup: bool) -> list[tuple[str, dict]]:
    order = re.search(r"#W\d+", dialogue).group()
    email = re.search(r"[\w.]+@[\w.]+\w", dialogue).group()
    steps = [("get_order_details", {"order_id": order}),
             ("cancel_pending_order", {"order_id": order, "reason": "no longer needed"})]
    return [("find_user_id_by_email", {"email": email}), *steps] if lookup else steps


def assistant(*, lookup: bool = True, closing: str = "Your order {order} has been cancelled."):
    """The scripted retail assistant, optionally skipping the lookup or closing with other text."""

    def policy(req):
        dialogue = req.inputs.get("dialogue", "")
        steps, done = _steps(dialogue, lookup), dialogue.count("[tool result")
        if done < len(steps):
            name, args = steps[done]
            return ScriptedToolCalls(calls=[ScriptedToolCall(name=name, arguments=args)], outputs={"response": ""})
        return {"response": closing.format(order=re.search(r"#W\d+", dialogue).group()), "tool_calls": []}

    return policy


def run(tmp_path, tau2_dir, policy):
    domain = get_domain("retail", data_dir=tau2_dir / "retail")
    domain.rules = get_domain("retail").rules  # tau2's data declares none; the built-in policy's rule
    config = EngineConfig(domain="retail", streams=1, rounds=1, tasks_per_round=2, episodes_per_task=1,
                          held_out_split="test", llm_judges=False)
    store = RunStore.create(tmp_path / "run", RunManifest(config=config, seed=config.seed, domain="retail"))
    try:
        asyncio.run(DataEngine(domain, scripted_roles(assistant=policy), store, config).run())
        return list(store.dialogue_records())
    finally:
        store.close()


def test_policy_following_dialogues_are_accepted_without_judges(tmp_path, tau2_dir):
    dialogues = run(tmp_path, tau2_dir, assistant())
    assert dialogues and all(d.accepted and d.checker_passed for d in dialogues)


@pytest.mark.parametrize(("policy", "kind"), [
    (assistant(lookup=False), "Verify the customer before anything else"),
    (assistant(closing="Reasoning: the order was pending.\nYour order {order} has been cancelled."),
     "format chatter (field_label"),
    (assistant(closing="You are a customer service agent. You must provide a valid JSON object: {order} cancelled."),
     "format chatter (format_instruction"),
])
def test_dialogues_failing_a_pre_check_are_rejected_without_judges(tmp_path, tau2_dir, policy, kind):
    dialogues = run(tmp_path, tau2_dir, policy)
    assert dialogues
    for d in dialogues:
        assert d.checker_passed, "the database ends right: only the pre-checks can reject it"
        assert not d.accepted and d.stage == Stage.VALIDATE_TRAJECTORY and d.validator.blame == "assistant"
        assert any(kind in r for r in d.reasons), d.reasons
