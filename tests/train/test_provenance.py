"""Exported RL tasks record the world they were validated in; GRPO refuses a task set from another world."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, load_from_disk

from eigendspy.domains import get_domain
from eigendspy.engine.export import RL_FEATURES, export_run, task_from_row
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.provenance import ProvenanceError, check_gold, check_rows
from eigendspy.train.grpo.run import load_tasks
from tests.train.sft_helpers import make_engine_run

OPTIONS = {"num_users": 8, "tasks_per_user": 5}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    export_run(make_engine_run(root / "run"), lambda name: get_domain(name, **OPTIONS), root / "export")
    return root / "export" / "rl_tasks"


def _config(tasks, **options) -> GRPORunConfig:
    return GRPORunConfig(model="unused", output_dir="unused", domain="mock", domain_options=options, tasks=str(tasks))


def test_db_hash_fingerprints_the_generated_world():
    assert get_domain("mock", **OPTIONS).db_hash() == get_domain("mock", **OPTIONS).db_hash()
    assert get_domain("mock", **OPTIONS).db_hash() != get_domain("mock").db_hash()
    assert get_domain("mock", seed=1).db_hash() != get_domain("mock", seed=2).db_hash()
    assert get_domain("mock", **OPTIONS).provenance()["domain_options"] == OPTIONS


def test_rows_record_the_domain_options_data_dir_and_db_hash(exported):
    rows = list(load_from_disk(str(exported)))
    domain = get_domain("mock", **OPTIONS)
    assert rows and all(row["db_hash"] == domain.db_hash() for row in rows)
    assert all(json.loads(row["domain_options"]) == OPTIONS for row in rows)
    assert all(row["data_dir"] == domain.data_dir for row in rows)


def test_load_tasks_accepts_the_matching_world_and_replays_every_gold(exported):
    domain, tasks = load_tasks(_config(exported, **OPTIONS))
    assert len(tasks) == len(load_from_disk(str(exported)))
    assert domain.options == OPTIONS


def test_load_tasks_refuses_another_database_and_says_how_to_fix_it(exported):
    with pytest.raises(ProvenanceError) as err:
        load_tasks(_config(exported, num_users=3))
    text = str(err.value)
    assert "another mock database" in text and "'num_users': 8" in text and "domain_options" in text


def test_rows_without_provenance_still_have_their_gold_replayed(exported):
    rows = [dict(row) for row in load_from_disk(str(exported))]
    legacy = [{**row, "domain_options": None, "data_dir": None, "db_hash": None} for row in rows]
    assert check_rows(legacy, get_domain("mock")) == 0  # nothing recorded: nothing to compare
    assert check_rows(rows, get_domain("mock", **OPTIONS)) == len(rows)
    task = task_from_row(rows[0])
    data = task.model_dump()
    for action in data["evaluation_criteria"]["actions"]:
        action["arguments"] = {k: "nobody" if k.endswith("_id") else v for k, v in action["arguments"].items()}
    broken = type(task).model_validate(data)
    assert broken.gold_actions[0].arguments != task.gold_actions[0].arguments
    with pytest.raises(ProvenanceError, match=f"task {task.id!r}: its gold solution no longer checks out"):
        check_gold([broken], get_domain("mock", **OPTIONS))
    check_gold([task], get_domain("mock", **OPTIONS))


def test_a_row_of_another_domain_is_refused():
    row = {"task_id": "t", "domain": "retail", "db_hash": "x"}
    with pytest.raises(ProvenanceError, match="exported for domain 'retail'"):
        check_rows([row], get_domain("mock"))


def test_rl_features_name_the_provenance_columns():
    assert {"domain_options", "data_dir", "db_hash"} <= set(RL_FEATURES)
    Dataset.from_dict({name: [] for name in RL_FEATURES}, features=RL_FEATURES)
