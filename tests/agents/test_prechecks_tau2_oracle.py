"""No false rejects: the dialogue pre-checks on tau2's gold dialogues, rendered by the oracle.

The oracle replays a task's gold actions (``build_trajectory``): text a real dialogue could hold,
every gold tool call and result, the ``communicate_info`` summary and ``###STOP###``. Prompt leakage
and format chatter must find nothing in any of them.

Ordering rules are declared only for the built-in policies: tau2's gold action lists are the graded
*minimum*, and 30 of the 74 retail train lists write without the authentication lookup tau2's policy
asks for, so over tau2's data no rule is declared and every gold dialogue passes every check. The
built-in retail rule, applied to those dialogues, flags exactly the lists that write first, and
passes them all once the policy's lookup is replayed first.
"""

from __future__ import annotations

import copy

import pytest

from eigendspy.agents.trajectory_prechecks import dialogue_findings
from eigendspy.core.environment import Environment
from eigendspy.core.oracle import build_trajectory
from eigendspy.core.task import Action
from eigendspy.domains import get_domain

RETAIL_LOOKUPS = ("find_user_id_by_email", "find_user_id_by_name_zip")


def _render(domain, task, actions=None):
    env = Environment.for_task(domain, task, tau2_compat=True)
    return build_trajectory(task, env, task.gold_actions if actions is None else actions)


def _decisive(domain, task, messages):
    return [f for f in dialogue_findings(task, messages, domain) if f.decisive]


def _writes_before_lookup(domain, task) -> bool:
    """Whether the task's gold list (not the checker) puts an assistant write before any lookup."""
    for action in task.gold_actions:
        if action.requestor == "assistant" and action.name in RETAIL_LOOKUPS:
            return False
        if action.requestor == "assistant" and domain.mutates_state(action.name):
            return True
    return False


def _authenticated(domain, task) -> list[Action]:
    """The gold actions with the retail policy's lookup first: the written order's (or address's)
    owner, found by email — what a policy-following agent does before the gold list's first write."""
    if not _writes_before_lookup(domain, task):
        return list(task.gold_actions)
    db = domain.base_db().model
    write = next(a for a in task.gold_actions if domain.mutates_state(a.name))
    user_id = write.arguments.get("user_id") or db.orders[write.arguments["order_id"]].user_id
    lookup = Action(action_id="auth", name="find_user_id_by_email", arguments={"email": db.users[user_id].email})
    return [lookup, *task.gold_actions]


@pytest.fixture(scope="module")
def retail(tau2_dir):
    return get_domain("retail", data_dir=tau2_dir / "retail")


def test_retail_train_gold_dialogues_pass_every_check(retail):
    tasks = retail.tasks("train")
    assert len(tasks) == 74
    assert retail.rules == ()
    for task in tasks:
        assert _decisive(retail, task, _render(retail, task)) == [], task.id


@pytest.fixture(scope="module")
def ruled(retail):
    """tau2's retail data under the built-in policy's ordering rule."""
    domain = copy.copy(retail)
    domain.rules = get_domain("retail").rules
    return domain


def test_retail_rule_passes_gold_dialogues_authenticated_first(ruled):
    tasks = ruled.tasks("train")
    prepended = 0
    for task in tasks:
        actions = _authenticated(ruled, task)
        prepended += len(actions) != len(task.gold_actions)
        assert _decisive(ruled, task, _render(ruled, task, actions)) == [], task.id
    assert prepended == 30  # the lists that write before any lookup (one of whose writes fails: task 105)


def test_retail_rule_flags_bare_gold_replays_only_where_the_list_writes_before_authenticating(ruled):
    flagged = set()
    for task in ruled.tasks("train"):
        for finding in _decisive(ruled, task, _render(ruled, task)):
            assert finding.kind == "policy_order" and finding.blame == "assistant", (task.id, finding)
            assert "Verify the customer before anything else" in finding.reason
            flagged.add(task.id)
    expected = {t.id for t in ruled.tasks("train") if _writes_before_lookup(ruled, t)}
    assert flagged <= expected
    assert expected - flagged == {"105"}  # its only write fails (insufficient gift card balance): no write made
    assert len(flagged) == 29


def test_retail_gold_lists_that_retry_a_failed_lookup_pass(retail):
    """Tasks 35, 37, 54 and 67 look the user up, fail ("User not found"), then succeed: only the
    successful lookup identifies, and it comes before the writes."""
    for task_id in ("35", "37", "54"):
        task = retail.task(task_id)
        messages = _render(retail, task)
        assert any(m.role == "tool" and m.error and "User not found" in m.content for m in messages)
        assert _decisive(retail, task, messages) == [], task_id


@pytest.mark.parametrize(("name", "split", "count"), [("mock", None, 10), ("airline", "train", 30),
                                                      ("telecom", "small", 20), ("retail", "test", 40)])
def test_other_tau2_gold_dialogues_pass_the_text_checks(tau2_dir, name, split, count):
    domain = get_domain(name, data_dir=tau2_dir / name)
    tasks = domain.tasks(split)
    assert len(tasks) == count
    for task in tasks:
        found = _decisive(domain, task, _render(domain, task))
        assert [f for f in found if f.kind != "policy_order"] == [], (task.id, found)
        if name != "retail":  # tau2's mock, airline and telecom policies state no tool-order rule
            assert domain.rules == () and found == [], task.id
