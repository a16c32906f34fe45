"""DB loading with the collector paused (`gc_paused`) and the linear airline generator.

The pause must always give the collector back as it found it (nested, across threads, when the
parse fails); the fast parse must build the same model as the old ``json.loads`` + ``model_validate``
path; the re-indexed airline generator must build byte-for-byte the DB the old one built.
"""

from __future__ import annotations

import gc
import hashlib
import json
import threading

import pytest

from eigendspy.core.domain import Domain
from eigendspy.core.gc_pause import gc_paused, pause_depth
from eigendspy.domains import tau2_data
from eigendspy.domains.airline import generate_db as airline_db
from eigendspy.domains.airline.db import FlightDB
from eigendspy.domains.mock.db import MockDB
from eigendspy.domains.retail.db import RetailDB
from eigendspy.domains.retail.generator import generate_db as retail_db
from eigendspy.domains.tau2_data import DataError

# sha256 of ``generate_db(seed, ...).model_dump_json()``, computed with the generator before it was
# made linear (git 4ae8859): (seed, num_users, num_flights, days) -> digest.
OLD_AIRLINE_DIGESTS = {
    (0, 50, 60, 30): "632803d005bc306dcee0d7b47a38c6936116d947546927bbcbd386a419eaaa66",
    (7, 5, 6, 30): "5589d16ad5b12c19677f737d05ff9e4de85c0d2264297d11e13b4daf8921b2b6",
    (3, 12, 10, 4): "5e7cd6b7f15d7f6bee8a8cf8c4fdf53c6114033e2568f511f0619230720bb3be",
    (11, 150, 180, 30): "b957ef8f76d7c7fce60776c64fb86966cbdf444bd42cf4669ed0218e0c054dfa",
}


@pytest.fixture(autouse=True)
def collector_on():
    """Every test starts and ends with the collector enabled and no pause open."""
    gc.enable()
    yield
    assert pause_depth() == 0
    gc.enable()


# -- the pause itself ---------------------------------------------------------------------------------
def test_pause_disables_and_restores_enabled():
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_pause_keeps_a_disabled_collector_disabled():
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_pause_restores_after_an_exception():
    with pytest.raises(RuntimeError, match="boom"), gc_paused():
        raise RuntimeError("boom")
    assert gc.isenabled() and pause_depth() == 0


def test_nested_pauses_restore_only_at_the_outermost_exit():
    with gc_paused():
        with gc_paused():
            assert pause_depth() == 2
        assert not gc.isenabled() and pause_depth() == 1
        gc.enable()  # someone else turns it on meanwhile: the pause still ends as it began
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads():
    entered, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        with gc_paused():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(5)
    with gc_paused():
        pass
    seen.append(gc.isenabled())  # the other thread's pause is still open
    release.set()
    thread.join(5)
    assert seen == [False] and gc.isenabled()


def test_objects_made_during_a_pause_skip_the_young_generations():
    class Marker:
        pass

    with gc_paused():
        made = Marker()
    assert any(o is made for o in gc.get_objects(generation=2))
    assert gc.get_count()[0] < 700  # no young collection of everything the pause made is pending


def test_an_existing_freeze_is_left_alone():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            pass
        assert gc.get_freeze_count() >= frozen and gc.isenabled()
    finally:
        gc.unfreeze()


# -- loading DBs ---------------------------------------------------------------------------------------
def _old_parse(path, model):
    return model.model_validate(json.loads(path.read_text()))


def test_load_model_equals_the_gc_on_parse_of_a_generated_db(tmp_path):
    path = tmp_path / "db.json"
    path.write_text(retail_db(3, num_users=60, num_orders=150).model_dump_json())
    assert gc.isenabled()
    new = tau2_data.load_model(path, RetailDB)
    assert gc.isenabled()
    assert new == _old_parse(path, RetailDB)
    assert new.model_dump() == _old_parse(path, RetailDB).model_dump()


@pytest.mark.parametrize(("relative", "model"), [("retail/db.json", RetailDB),
                                                 ("airline/synthetic_db.json", FlightDB),
                                                 ("mock/db.json", MockDB)])
def test_load_model_equals_the_gc_on_parse_of_tau2_dbs(tau2_dir, relative, model):
    path = tau2_dir / relative
    assert tau2_data.load_model(path, model) == _old_parse(path, model)


def test_invalid_json_names_the_file_and_restores_the_collector(tmp_path):
    path = tmp_path / "db.json"
    path.write_text('{"users": {')
    with pytest.raises(DataError, match=r"db\.json: cannot parse"):
        tau2_data.load_model(path, RetailDB)
    assert gc.isenabled() and pause_depth() == 0


def test_invalid_field_names_the_field_and_restores_the_collector(tmp_path):
    path = tmp_path / "db.json"
    path.write_text(json.dumps({"products": {}, "users": {}, "orders": 3}))
    with pytest.raises(DataError, match=r"field 'orders'"):
        tau2_data.load_model(path, RetailDB)
    assert gc.isenabled() and pause_depth() == 0


def test_domain_loads_its_db_paused_and_restores_after_a_failing_loader():
    states: list[bool] = []

    def failing():
        states.append(gc.isenabled())
        raise ValueError("no db")

    domain = Domain(name="x", db_model=RetailDB, tools=[], policy="", load_db=failing)
    with pytest.raises(ValueError, match="no db"):
        domain.base_db()
    assert states == [False] and gc.isenabled()

    def loader():
        states.append(gc.isenabled())
        return retail_db(0, num_users=3, num_orders=4)

    assert Domain(name="y", db_model=RetailDB, tools=[], policy="", load_db=loader).base_db().model.users
    assert states == [False, False] and gc.isenabled()


# -- the airline generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", sorted(OLD_AIRLINE_DIGESTS))
def test_airline_generator_output_is_unchanged(args):
    seed, users, flights, days = args
    db = airline_db(seed, num_users=users, num_flights=flights, days=days)
    assert hashlib.sha256(db.model_dump_json().encode()).hexdigest() == OLD_AIRLINE_DIGESTS[args]
    assert gc.isenabled()
