"""sample_entities: real rows, deterministic per seed, within budget, linked along references."""

from __future__ import annotations

import json
import random

import pytest

from eigendspy.domains import get_domain
from eigendspy.engine.entities import render_row, sample_entities


def _rows(text: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    table = ""
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith("{"):
            table = line.split(" (")[0]
            out[table] = []
        elif line.endswith("}"):
            out[table].append(json.loads(line))
    return out


@pytest.mark.parametrize("name", ["mock", "retail", "airline"])
def test_builtin_domains_are_deterministic_and_budgeted(name):
    domain = get_domain(name)
    a = sample_entities(domain, random.Random(3), k=2, max_chars=900)
    b = sample_entities(domain, random.Random(3), k=2, max_chars=900)
    assert a == b and 0 < len(a) <= 900
    assert sample_entities(domain, random.Random(4), k=2, max_chars=900) != a or name == "mock"


def test_retail_rows_are_real_and_linked(tau2_dir):
    retail = get_domain("retail", data_dir=tau2_dir / "retail")
    text = sample_entities(retail, random.Random(0), k=2, max_chars=1500)
    assert len(text) <= 1500
    db = retail.base_db().model
    rows = _rows(text)
    assert set(rows) == {"orders", "users", "products"}
    orders = [r["order_id"] for r in rows["orders"]]
    assert orders and all(o in db.orders for o in orders)
    # the anchor is orders (it references users and products); their users are sampled with them
    assert list(rows)[0] == "orders"
    assert {r["user_id"] for r in rows["users"]} == {db.orders[o].user_id for o in orders}


def test_tight_budget_still_holds_and_seeds_differ(tau2_dir):
    retail = get_domain("retail", data_dir=tau2_dir / "retail")
    for budget in (120, 400, 2000):
        assert len(sample_entities(retail, random.Random(1), k=3, max_chars=budget)) <= budget
    assert sample_entities(retail, random.Random(1)) != sample_entities(retail, random.Random(2))


def test_mock_tau2_data_has_its_single_rows(tau2_dir):
    text = sample_entities(get_domain("mock", data_dir=tau2_dir / "mock"), random.Random(0))
    assert '"task_id":"task_1"' in text and '"user_id":"user_1"' in text


def test_render_row_discloses_breadth_first():
    row = {"id": "A1", "status": "ok", "big": {str(i): {"x": "y" * 30} for i in range(20)}, "small": {"zip": "12345"}}
    text = render_row(row, 80)
    assert len(text) <= 80
    shown = json.loads(text)
    assert shown["id"] == "A1" and shown["small"] == {"zip": "12345"} and shown["big"] == "{20 fields}"


def test_domain_hook_overrides_sampling():
    domain = get_domain("mock")
    domain.sample_entities = lambda d, rng, k, max_chars: f"custom {k} {rng.randint(0, 9)}"
    assert sample_entities(domain, random.Random(0), k=2).startswith("custom 2 ")
