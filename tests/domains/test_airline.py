"""The airline domain against tau2-bench's recorded behaviour, plus the generator and the policy rules.

tau2's airline ``db.json`` is not in the shared snapshot, so the tool semantics are pinned by
tau2's probe oracle on a synthetic DB (every call's output, error flag and DB hash). The policy
scenarios run on a generated DB and check `rules` against what the tools actually do.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from eigendspy.core.environment import Environment
from eigendspy.core.state import tau2_hash
from eigendspy.core.task import load_tasks
from eigendspy.domains import get_domain
from eigendspy.domains.airline import generate_db, load_domain, rules
from eigendspy.domains.airline.db import FlightDateStatusAvailable, FlightDB, GiftCard, Payment, Reservation
from eigendspy.domains.airline.write_tools import NEW_CERTIFICATE_IDS
from eigendspy.domains.tau2_data import DataError
from tests.domains.probes import replay_probes

SYNTHETIC_HASH = "0779ed206eb1af6d1964336f3e0a65c173d849aa693b464faf74dfd56f010fff"
NOW = rules.CURRENT_TIME


# -- tau2 conformance -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tau2_airline(tau2_dir):
    return get_domain("airline", data_dir=tau2_dir / "airline")


def test_synthetic_db_hash_equals_tau2(tau2_dir):
    raw = json.loads((tau2_dir / "airline" / "synthetic_db.json").read_text())
    assert tau2_hash(FlightDB.model_validate(raw).model_dump()) == SYNTHETIC_HASH


def test_schemas_and_kinds_equal_tau2(tau2_dir, tau2_airline):
    want = json.loads((tau2_dir / "airline" / "tool_schemas.json").read_text())
    assert tau2_airline.tool_schemas("assistant") == want["assistant"]
    assert tau2_airline.toolkit.tool_meta() == want["tool_meta"]["assistant"]
    assert want["user"] == [] and len(tau2_airline.user_toolkit) == 0


def test_every_probe_sequence_matches_tau2(tau2_dir, tau2_airline):
    assert replay_probes(tau2_airline, tau2_dir / "airline" / "probe_oracle.jsonl") == 319


def test_tau2_data_dir_loads_tasks_splits_policy(tau2_dir, tau2_airline):
    assert len(tau2_airline.tasks()) == 50 and len(tau2_airline.tasks("test")) == 20
    assert tau2_airline.policy == (tau2_dir / "airline" / "policy.md").read_text()


def test_data_dir_without_db_names_the_missing_files(tmp_path):
    (tmp_path / "policy.md").write_text("policy")
    with pytest.raises(DataError, match="db.json, synthetic_db.json"):
        load_domain(tmp_path)


def test_tau2_tasks_parse_and_gold_actions_fit_the_schemas(tau2_dir, tau2_airline):
    tasks = load_tasks(tau2_dir / "airline" / "tasks.json")
    assert len(tasks) == 50
    schemas = {s["function"]["name"]: s["function"]["parameters"] for s in tau2_airline.tool_schemas()}
    actions = 0
    for task in tasks:
        for action in task.gold_actions:
            assert action.name in schemas, (task.id, action.name)
            params = schemas[action.name]
            assert set(action.arguments) <= set(params["properties"]), (task.id, action.name)
            assert set(params.get("required", [])) <= set(action.arguments), (task.id, action.name)
            actions += 1
    assert actions > 100


# -- built-in domain and generator ------------------------------------------------------------------
@pytest.fixture
def builtin(monkeypatch):
    """The built-in domain, even where ``$EIGENDSPY_TAU2_DATA`` points at tau2's data."""
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)
    return get_domain("airline", seed=3)


def test_builtin_domain(builtin):
    assert len(builtin.toolkit) == 14 and builtin.tasks() == []
    assert "certificate" in builtin.policy and len(builtin.policy.split()) < 1200
    assert builtin.base_db().model == generate_db(3)


def test_generator_is_seeded():
    assert tau2_hash(generate_db(5).model_dump()) == tau2_hash(generate_db(5).model_dump())
    assert tau2_hash(generate_db(5).model_dump()) != tau2_hash(generate_db(6).model_dump())
    big = generate_db(1, num_users=200, num_flights=150, days=30)
    assert len(big.users) == 200 and len(big.flights) == 150 and len(big.reservations) > 250


def test_generated_db_is_consistent():
    db = generate_db(seed=2)
    assert FlightDB.model_validate(json.loads(db.model_dump_json())) == db
    statuses = {s.status for f in db.flights.values() for s in f.dates.values()}
    assert statuses == {"available", "on time", "delayed", "flying", "landed", "cancelled"}
    assert {r.cabin for r in db.reservations.values()} == {"basic_economy", "economy", "business"}
    assert {r.flight_type for r in db.reservations.values()} == {"one_way", "round_trip"}
    for reservation in db.reservations.values():
        user = db.users[reservation.user_id]
        assert reservation.reservation_id in user.reservations
        assert 1 <= len(reservation.passengers) <= rules.MAX_PASSENGERS
        legs = reservation.flights
        assert legs[0].origin == reservation.origin
        for leg in legs:
            flight = db.flights[leg.flight_number]
            assert leg.date in flight.dates and (leg.origin, leg.destination) == (flight.origin, flight.destination)
        assert all(a.destination == b.origin for a, b in zip(legs, legs[1:], strict=False))
        if reservation.flight_type == "round_trip":
            assert legs[-1].destination == reservation.origin
        else:
            assert legs[-1].destination == reservation.destination
        count, bags = len(reservation.passengers), reservation.total_baggages
        assert reservation.nonfree_baggages == rules.nonfree_bags(user.membership, reservation.cabin, count, bags)
        charges = [p for p in reservation.payment_history if p.amount > 0]
        total = rules.booking_total(
            [leg.price for leg in legs],
            len(reservation.passengers),
            reservation.insurance == "yes",
            reservation.nonfree_baggages,
        )
        assert sum(p.amount for p in charges) == total
        assert sum(p.amount for p in reservation.payment_history) == (0 if reservation.status else total)
        assert reservation.created_at <= "2024-05-15T15:00:00"
    for user in db.users.values():
        assert any(m.source == "credit_card" for m in user.payment_methods.values())
        assert all(isinstance(m.amount, float) for m in user.payment_methods.values() if m.source != "credit_card")


# -- policy scenarios: rules.py and the tools -------------------------------------------------------
def _statuses(env: Environment, reservation: Reservation) -> dict[tuple[str, str], str]:
    return rules.flight_statuses(env.view(), reservation)


def _open_flight(db: FlightDB, seats: int = 2) -> tuple[str, str, str, str, dict[str, int]]:
    """A future flight-date with enough seats in every cabin: number, date, origin, destination, prices."""
    for flight in db.flights.values():
        for day, status in flight.dates.items():
            if isinstance(status, FlightDateStatusAvailable) and day > "2024-05-16":
                if min(status.available_seats.values()) >= seats:
                    return flight.flight_number, day, flight.origin, flight.destination, dict(status.prices)
    raise AssertionError("no open flight in the generated DB")


def _book(env: Environment, user_id: str, cabin: str, payments: list[dict], bags: int = 0, **extra) -> dict:
    db = env.domain.base_db().model
    number, day, origin, destination, _ = _open_flight(db)
    msg = env.make_tool_call(
        "book_reservation",
        user_id=user_id,
        origin=origin,
        destination=destination,
        flight_type="one_way",
        cabin=cabin,
        flights=[{"flight_number": number, "date": day}],
        passengers=[{"first_name": "Ana", "last_name": "Lopez", "dob": "1990-01-01"}],
        payment_methods=payments,
        total_baggages=bags,
        nonfree_baggages=extra.get("nonfree", 0),
        insurance=extra.get("insurance", "no"),
    )
    assert not msg.error, msg.content
    return json.loads(msg.content)


def _user_with(db: FlightDB, membership: str | None = None, gift_card: bool = False) -> str:
    for user in db.users.values():
        has_gift = any(isinstance(m, GiftCard) and m.amount >= 20 for m in user.payment_methods.values())
        if (membership is None or user.membership == membership) and (has_gift or not gift_card):
            return user.user_id
    raise AssertionError("no such user in the generated DB")


def _card(db: FlightDB, user_id: str) -> str:
    return next(m.id for m in db.users[user_id].payment_methods.values() if m.source == "credit_card")


def test_cancel_within_24_hours_is_allowed_and_cancels(builtin):
    env = Environment(builtin)
    db = builtin.base_db().model
    user_id = _user_with(db)
    _, _, _, _, prices = _open_flight(db)
    booked = _book(env, user_id, "economy", [{"payment_id": _card(db, user_id), "amount": prices["economy"]}])
    reservation = Reservation.model_validate(booked)
    assert reservation.created_at == "2024-05-15T15:00:00"
    assert rules.can_cancel(reservation, NOW, "change of plan", _statuses(env, reservation)) == (
        True,
        "Booked within the last 24 hours.",
    )
    later = NOW + timedelta(hours=25)
    assert rules.can_cancel(reservation, later, "change of plan", _statuses(env, reservation))[0] is False
    cancelled = json.loads(env.make_tool_call("cancel_reservation", reservation_id=reservation.reservation_id).content)
    assert cancelled["status"] == "cancelled"
    assert [p["amount"] for p in cancelled["payment_history"]] == [prices["economy"], -prices["economy"]]
    assert rules.can_cancel(Reservation.model_validate(cancelled), NOW, "change of plan", {})[0] is False


def test_cancel_after_24_hours_without_insurance_is_refused_by_rules(builtin):
    env = Environment(builtin)
    db = builtin.base_db().model
    candidates = [
        r
        for r in db.reservations.values()
        if r.status is None
        and r.insurance == "no"
        and r.cabin != "business"
        and r.created_at < "2024-05-14T15:00:00"
        and not set(_statuses(env, r).values()) & {"cancelled", "flying", "landed"}
    ]
    assert candidates
    reservation = candidates[0]
    allowed, reason = rules.can_cancel(reservation, NOW, "change of plan", _statuses(env, reservation))
    assert not allowed and "24 hours" in reason
    insured = reservation.model_copy(update={"insurance": "yes"})
    assert rules.can_cancel(insured, NOW, "health", _statuses(env, reservation))[0]
    assert not rules.can_cancel(insured, NOW, "change of plan", _statuses(env, reservation))[0]
    business = reservation.model_copy(update={"cabin": "business"})
    assert rules.can_cancel(business, NOW, "other", _statuses(env, reservation))[0]
    flown = {key: "landed" for key in _statuses(env, reservation)}
    assert rules.can_cancel(business, NOW, "other", flown) == (
        False,
        "Part of the trip has already been flown; only a human agent can help.",
    )
    airline_cancelled = {key: "cancelled" for key in _statuses(env, reservation)}
    assert rules.can_cancel(reservation, NOW, "airline cancelled flight", airline_cancelled)[0]
    # The tool itself enforces none of this (as in tau2): the agent must check the rules.
    assert not env.make_tool_call("cancel_reservation", reservation_id=reservation.reservation_id).error


def test_basic_economy_cannot_change_flights_but_can_change_cabin(builtin):
    env = Environment(builtin)
    db = builtin.base_db().model
    basic = next(r for r in db.reservations.values() if r.cabin == "basic_economy" and r.status is None)
    economy = next(r for r in db.reservations.values() if r.cabin == "economy" and r.status is None)
    assert rules.can_change_flights(basic) == (False, "Basic economy flights cannot be changed.")
    assert rules.can_change_flights(economy)[0]
    assert not rules.can_change_flights(economy, {k: "landed" for k in _statuses(env, economy)})[0]
    assert rules.can_change_cabin(basic, {k: "available" for k in _statuses(env, basic)})[0]
    assert rules.keeps_route(economy, [(f.origin, f.destination) for f in economy.flights])[0]
    assert not rules.keeps_route(economy, [(economy.destination, economy.origin)])[0]
    # A cabin upgrade through the tool: re-priced at today's business fare, difference charged.
    user_id = _user_with(db)
    _, _, _, _, prices = _open_flight(db)
    booked = _book(
        env, user_id, "basic_economy", [{"payment_id": _card(db, user_id), "amount": prices["basic_economy"]}]
    )
    flights = [{"flight_number": f["flight_number"], "date": f["date"]} for f in booked["flights"]]
    upgraded = env.make_tool_call(
        "update_reservation_flights",
        reservation_id=booked["reservation_id"],
        cabin="business",
        flights=flights,
        payment_id=_card(db, user_id),
    )
    body = json.loads(upgraded.content)
    assert body["cabin"] == "business"
    assert body["payment_history"][-1]["amount"] == prices["business"] - prices["basic_economy"]


def test_baggage_allowance_by_membership_and_cabin(builtin):
    assert rules.free_bag_allowance("gold", "business") == 4
    assert rules.free_bag_allowance("regular", "basic_economy") == 0
    assert rules.free_bag_allowance("silver", "economy") == 2
    assert rules.nonfree_bags("silver", "economy", passengers=2, total_bags=5) == 1
    env = Environment(builtin)
    db = builtin.base_db().model
    user_id = _user_with(db, membership="gold")
    _, _, _, _, prices = _open_flight(db)
    # 5 bags for a gold economy passenger: 3 free, 2 at $50 -- the tool's total agrees with the rules.
    nonfree = rules.nonfree_bags("gold", "economy", 1, 5)
    total = rules.booking_total([prices["economy"]], 1, True, nonfree)
    payment = [{"payment_id": _card(db, user_id), "amount": total}]
    booked = _book(env, user_id, "economy", payment, bags=5, nonfree=nonfree, insurance="yes")
    assert (booked["total_baggages"], booked["nonfree_baggages"]) == (5, 2)
    reservation = Reservation.model_validate(booked)
    assert rules.can_change_baggage(reservation, 4) == (False, "Checked bags can be added but not removed.")
    assert rules.can_change_baggage(reservation, 6)[0]
    more = env.make_tool_call(
        "update_reservation_baggages",
        reservation_id=booked["reservation_id"],
        total_baggages=6,
        nonfree_baggages=rules.nonfree_bags("gold", "economy", 1, 6),
        payment_id=_card(db, user_id),
    )
    assert json.loads(more.content)["payment_history"][-1]["amount"] == 50


def test_payment_with_certificate_and_gift_card(builtin):
    env = Environment(builtin)
    db = builtin.base_db().model
    user_id = _user_with(db, gift_card=True)
    gift = next(m for m in db.users[user_id].payment_methods.values() if isinstance(m, GiftCard) and m.amount >= 20)
    sent = env.make_tool_call("send_certificate", user_id=user_id, amount=10)
    certificate = sent.content.split()[1]
    assert certificate.startswith("certificate_") and not sent.error
    _, _, _, _, prices = _open_flight(db)
    payments = [
        {"payment_id": certificate, "amount": 10},
        {"payment_id": gift.id, "amount": 10},
        {"payment_id": _card(db, user_id), "amount": prices["economy"] - 20},
    ]
    user_now = env.view().users[user_id]
    assert rules.valid_payment_split(user_now, [Payment(**p) for p in payments])[0]
    _book(env, user_id, "economy", payments)
    after = json.loads(env.make_tool_call("get_user_details", user_id=user_id).content)
    assert certificate not in after["payment_methods"]  # used up entirely
    assert after["payment_methods"][gift.id]["amount"] == gift.amount - 10
    # The rules refuse splits the policy forbids.
    env.make_tool_call("send_certificate", user_id=user_id, amount=50)
    env.make_tool_call("send_certificate", user_id=user_id, amount=60)
    user_now = env.view().users[user_id]
    two = [Payment(payment_id=c, amount=10) for c in NEW_CERTIFICATE_IDS if c in user_now.payment_methods]
    assert len(two) == 2
    assert rules.valid_payment_split(user_now, two) == (False, "At most 1 certificate may pay for one reservation.")
    assert not rules.valid_payment_split(user_now, [Payment(payment_id="credit_card_0", amount=10)])[0]
    assert rules.valid_update_payment(user_now, two[0].payment_id)[0] is False
    assert rules.valid_update_payment(user_now, _card(db, user_id))[0]


def test_compensation_rules(builtin):
    db = builtin.base_db().model
    reservation = next(r for r in db.reservations.values() if len(r.passengers) == 2 and r.cabin != "business")
    user = db.users[reservation.user_id]
    plain = reservation.model_copy(update={"insurance": "no"})
    regular = user.model_copy(update={"membership": "regular"})
    gold = user.model_copy(update={"membership": "gold"})
    assert rules.compensation(regular, plain, "cancelled", changed_or_cancelled=False) == 0
    assert rules.compensation(gold, plain, "cancelled", changed_or_cancelled=False) == 200
    assert rules.compensation(gold, plain, "delayed", changed_or_cancelled=False) == 0
    assert rules.compensation(gold, plain, "delayed", changed_or_cancelled=True) == 100
