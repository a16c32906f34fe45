"""A predicate's value must never alias the shared, cached DB dump (every environment hashes it)."""

from __future__ import annotations

from eigendspy.core.environment import Environment
from eigendspy.domains import get_domain
from eigendspy.scoring.sandbox.predicate import evaluate, evaluate_predicate


def test_mutating_a_predicate_value_leaves_every_environment_hash_unchanged() -> None:
    domain = get_domain("mock")  # a private copy: a regression must not corrupt other tests' cached DB
    env = Environment(domain)
    before = env.db_hash()
    dump = env.agent_state.dump()
    assert dump is domain.base_db().dump()  # a pristine state hands out the shared cached dump itself

    users = evaluate_predicate('db["users"]', {"db": dump})
    assert users.passed and users.error is None
    first = next(iter(users.value))
    users.value[first]["mutated"] = True
    users.value.clear()
    rows = evaluate('[row for row in db["tasks"].values()]', {"db": dump})
    rows[0].clear()
    whole = evaluate("db", {"db": dump})
    whole["tasks"] = None

    assert env.db_hash() == before
    assert Environment(domain).db_hash() == before
    assert domain.base_db().dump() == Environment(domain).agent_state.to_model().model_dump()
