"""core.similarity: shingles, Jaccard, the exact nearest-neighbour index, task and plan similarity."""

from __future__ import annotations

import pytest

from eigendspy.core.plans import SynthesisPlan
from eigendspy.core.similarity import (
    ShingleIndex,
    content_words,
    jaccard,
    named_tools,
    ngrams,
    plan_similarity,
    plans_overlap,
    shingles,
    task_shingles,
    task_text,
    words,
)
from eigendspy.core.task import Task
from eigendspy.recipe import split


def plan(intent: str, tools: str = "find user -> act", complexity: str = "single_action",
         edge: str = "none") -> SynthesisPlan:
    return SynthesisPlan(intent_family=intent, complexity=complexity, tool_pattern=tools, user_style="terse",
                         edge_case=edge)


def task(task_id: str, reason: str, actions: list[tuple[str, dict]]) -> Task:
    return Task.model_validate({
        "id": task_id,
        "user_scenario": {"instructions": {"domain": "retail", "reason_for_call": reason,
                                           "task_instructions": "Be brief."}},
        "evaluation_criteria": {"actions": [{"action_id": f"{task_id}_{i}", "name": name, "arguments": args}
                                            for i, (name, args) in enumerate(actions)]},
    })


def test_words_keep_ids_whole_and_content_words_split_identifiers():
    assert words("Cancel #W2611340 for mia.garcia@example.com, user_8!") == [
        "cancel", "#w2611340", "for", "mia.garcia@example.com", "user_8"]
    assert content_words("Cancel the pending_orders of a user") == ["cancel", "pend", "order", "user"]


def test_ngrams_and_jaccard():
    assert ngrams(["a", "b", "c"], 2) == {("a", "b"), ("b", "c")}
    assert ngrams(["a"], 3) == {("a",)} and ngrams([], 2) == frozenset()
    with pytest.raises(ValueError):
        ngrams(["a"], 0)
    assert shingles("a b c d", 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert jaccard(frozenset({1, 2}), frozenset({2, 3})) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_index_returns_the_exact_nearest_and_the_earliest_on_ties():
    index = ShingleIndex()
    index.add("t0", shingles("cancel order one now"))
    index.add("t1", shingles("cancel order one now"))  # same text, added later: loses the tie
    index.add("t2", shingles("return the blue shirt please"))
    assert len(index) == 3 and "t2" in index
    query = shingles("please cancel order one now")
    assert index.closest(query) == ("t0", pytest.approx(jaccard(query, shingles("cancel order one now"))))
    assert index.closest(shingles("nothing in common here")) == (None, 0.0)
    brute = {k: jaccard(query, s) for k, s in [("t0", shingles("cancel order one now")),
                                               ("t2", shingles("return the blue shirt please"))]}
    assert index.scores(query)["t0"] == pytest.approx(brute["t0"]) and "t2" not in index.scores(query)


def test_task_text_has_scenario_and_canonical_actions_and_split_reexports_it():
    t = task("t", "You want order #W1 cancelled.", [("cancel_pending_order", {"reason": "x", "order_id": "#W1"})])
    assert "#W1 cancelled" in task_text(t)
    assert 'cancel_pending_order {"order_id": "#W1", "reason": "x"}' in task_text(t)
    assert split.shingles(t, 3) == task_shingles(t, 3) and split.jaccard is jaccard


def test_plan_similarity_uses_intent_words_and_named_tools_not_generic_pattern_words():
    assert named_tools(plan("x", "find_user_id_by_email -> get order -> cancel_pending_order")) == {
        "find_user_id_by_email", "cancel_pending_order"}
    # the same generic pattern does not make different intents similar
    assert plan_similarity(plan("cancel a pending order"), plan("track an order")) == pytest.approx(0.25)
    reordered = plan_similarity(plan("cancel a pending order", "find_user_id_by_email -> cancel_pending_order"),
                                plan("Cancel an order that is still pending", "look up, then cancel_pending_order"))
    assert reordered >= 0.6


@pytest.mark.parametrize(("a", "b", "expected"), [
    (plan("Cancel a pending order"), plan("cancel a pending order "), True),  # equal cell
    (plan("return delivered items for a refund", "get order -> return_delivered_order_items"),
     plan("Refund: return items from a delivered order", "return_delivered_order_items"), True),  # reworded
    (plan("return items"), plan("return items", complexity="multi_step"), False),  # another cell by design
    (plan("Enables international roaming on a line", "look up -> enable_roaming"),
     plan("Disables international roaming on a line", "look up -> disable_roaming"), False),  # conflicting tools
    (plan("cancel a pending order"), plan("track an order"), False),
])
def test_plans_overlap(a, b, expected):
    assert plans_overlap(a, b, threshold=0.4) is expected
    assert plans_overlap(b, a, threshold=0.4) is expected
