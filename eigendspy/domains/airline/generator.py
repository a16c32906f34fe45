"""A seeded generator for airline databases in tau2's schema (no third-party data needed).

Why: tau2's airline DB is third-party data we may not ship, yet synthesis, tests and the demo
need a realistic airline. This builds one around tau2's fixed "now" (2024-05-15 15:00 EST):

- flights (``HAT001``-style numbers) fly both ways between real airports, with durations from
  great-circle distance, overnight arrivals marked ``+1``, and a status per date that fits the
  clock -- landed or cancelled in the past, landed / flying / on time / delayed / cancelled
  today, mostly available (seats and distance-based prices per cabin) in the future;
- users (``first_last_1234``) have credit cards, gift cards and certificates with float
  balances, saved passengers, a membership and their reservation ids;
- reservations (6-character ids) follow real connections (direct or one stop, one way or round
  trip), are priced from the flights, carry bags consistent with the policy's free allowance
  (`rules.nonfree_bags`), are paid within the policy's payment limits with a history that adds
  up (a used certificate is gone from the profile, a gift card is drawn down), and a few are
  cancelled (refund entries appended) or booked within the last 24 hours.

The same arguments always give the same DB.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta

from eigendspy.core.gc_pause import gc_paused
from eigendspy.domains.airline import rules
from eigendspy.domains.airline.catalog import (
    AIRPORT_COORDS,
    CABIN_PRICE_FACTOR,
    CABIN_WEIGHTS,
    CARD_BRANDS,
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    LISTED_CABINS,
    MEMBERSHIP_WEIGHTS,
    STREETS,
)
from eigendspy.domains.airline.db import (
    CABINS,
    NOW,
    Address,
    CabinClass,
    Certificate,
    CreditCard,
    Flight,
    FlightDateStatus,
    FlightDateStatusAvailable,
    FlightDateStatusCancelled,
    FlightDateStatusDelayed,
    FlightDateStatusFlying,
    FlightDateStatusLanded,
    FlightDateStatusOnTime,
    FlightDB,
    GiftCard,
    Name,
    Passenger,
    Payment,
    Reservation,
    ReservationFlight,
    User,
)
from eigendspy.domains.airline.itinerary import Leg, Network, return_route, route
from eigendspy.domains.airline.write_tools import NEW_CERTIFICATE_IDS, NEW_RESERVATION_IDS

Fares = dict[str, dict[CabinClass, int]]
"""Base fare per flight number and cabin (what bookings made before a flight closed paid)."""
CURRENT = datetime.fromisoformat(NOW)
TODAY, TOMORROW = CURRENT.date(), CURRENT.date() + timedelta(days=1)
FIRST_DATE = date(2024, 5, 1)
RESERVED_IDS = set(NEW_RESERVATION_IDS) | set(NEW_CERTIFICATE_IDS)
"""Ids the tools mint themselves; the generator never uses them, so the tools behave as in tau2."""


class _Ids:
    """Unique ids of several shapes from one RNG (no id is ever issued twice)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set(RESERVED_IDS)

    def _fresh(self, make: Callable[[], str]) -> str:
        while True:
            candidate = make()
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate

    def digits(self, n: int, prefix: str = "") -> str:
        return self._fresh(lambda: prefix + str(self.rng.randrange(10 ** (n - 1), 10**n)))

    def reservation(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        return self._fresh(lambda: "".join(self.rng.choice(alphabet) for _ in range(6)))


def _clock(minutes: int) -> str:
    """Minutes after midnight of the departure day as tau2 writes times (``+1`` = next day)."""
    day, rest = divmod(minutes, 24 * 60)
    return f"{rest // 60:02d}:{rest % 60:02d}:00" + ("+1" if day else "")


def _duration(origin: str, destination: str) -> int:
    """Block time in minutes: taxi and climb plus cruise at ~780 km/h, rounded to 30 minutes."""
    (lat1, lon1), (lat2, lon2) = AIRPORT_COORDS[origin], AIRPORT_COORDS[destination]
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    km = 6371 * math.acos(min(1.0, math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)))
    return max(60, round((40 + km / 13) / 30) * 30)


def _status(
    rng: random.Random, day: date, depart: datetime, arrive: datetime, base: dict[CabinClass, int]
) -> FlightDateStatus:
    """The status of one flight-date (scheduled ``depart``/``arrive``), consistent with the fixed current time.

    Times are written with ``isoformat()`` (whole minutes, no zone: the same text as
    ``strftime("%Y-%m-%dT%H:%M:%S")``, several times faster; this runs for every flight-date).
    """
    if rng.random() < 0.04:
        return FlightDateStatusCancelled()
    if arrive <= CURRENT:
        late = timedelta(minutes=rng.choice([0, 0, 0, 5, 15, 40]))
        return FlightDateStatusLanded(
            actual_departure_time_est=(depart + late).isoformat(),
            actual_arrival_time_est=(arrive + late).isoformat(),
        )
    if depart <= CURRENT:
        return FlightDateStatusFlying(
            actual_departure_time_est=depart.isoformat(), estimated_arrival_time_est=arrive.isoformat()
        )
    if day == TODAY or (day == TOMORROW and rng.random() < 0.1):
        if rng.random() < 0.3 or day != TODAY:
            late = timedelta(minutes=rng.choice([30, 60, 90, 150]))
            return FlightDateStatusDelayed(
                estimated_departure_time_est=(depart + late).isoformat(),
                estimated_arrival_time_est=(arrive + late).isoformat(),
            )
        return FlightDateStatusOnTime(
            estimated_departure_time_est=depart.isoformat(), estimated_arrival_time_est=arrive.isoformat()
        )
    swing = rng.uniform(0.8, 1.25)
    return FlightDateStatusAvailable(
        available_seats={c: rng.randint(0, 20) for c in LISTED_CABINS},
        prices={c: max(30, round(base[c] * swing)) for c in LISTED_CABINS},
    )


def _flights(rng: random.Random, num_flights: int, days: int) -> tuple[dict[str, Flight], Fares]:
    """Flights in return pairs over random routes, and each flight's base fare per cabin."""
    airports = list(AIRPORT_COORDS)
    numbers = sorted(rng.sample(range(1, max(1000, 2 * num_flights)), num_flights))
    flights: dict[str, Flight] = {}
    fares: dict[str, dict[CabinClass, int]] = {}
    days_flown = [FIRST_DATE + timedelta(days=i) for i in range(days)]
    dates = [(d, d.isoformat(), datetime(d.year, d.month, d.day)) for d in days_flown]  # day, key, midnight
    route: tuple[str, str] | None = None
    for index, number in enumerate(numbers):
        if index % 2 == 0 or route is None:  # a new route; the next flight flies it back
            origin, destination = rng.sample(airports, 2)
            route = (origin, destination)
        else:
            destination, origin = route
        block = _duration(origin, destination)
        dep = rng.randrange(5 * 2, 23 * 2 + 1) * 30  # departures 05:00 .. 23:00 on the half hour
        depart, arrive = timedelta(minutes=dep), timedelta(minutes=dep + block)
        base_fare = 40 + block * 0.9
        base = {c: round(base_fare * rng.uniform(*CABIN_PRICE_FACTOR[c])) for c in CABINS}
        flight_number = f"HAT{number:03d}"
        flights[flight_number] = Flight(
            flight_number=flight_number,
            origin=origin,
            destination=destination,
            scheduled_departure_time_est=_clock(dep),
            scheduled_arrival_time_est=_clock(dep + block),
            dates={
                iso: _status(rng, day, start + depart, start + arrive, base) for day, iso, start in dates
            },
        )
        fares[flight_number] = base
    return flights, fares


def _users(rng: random.Random, ids: _Ids, num_users: int) -> dict[str, User]:
    users: dict[str, User] = {}
    for _ in range(num_users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        user_id = ids.digits(4, f"{first.lower()}_{last.lower()}_")
        methods: dict[str, CreditCard | GiftCard | Certificate] = {}
        for _card in range(rng.choice([1, 1, 1, 2])):
            card_id = ids.digits(7, "credit_card_")
            methods[card_id] = CreditCard(id=card_id, brand=rng.choice(CARD_BRANDS), last_four=ids.digits(4)[-4:])
        for _gift in range(rng.choice([0, 0, 1, 1, 2])):
            gift_id = ids.digits(7, "gift_card_")
            methods[gift_id] = GiftCard(id=gift_id, amount=float(rng.randrange(20, 400)))
        for _cert in range(rng.choice([0, 0, 0, 1, 2])):
            cert_id = ids.digits(7, "certificate_")
            methods[cert_id] = Certificate(id=cert_id, amount=float(rng.choice([50, 100, 150, 200, 250, 500])))
        city, state, zip_prefix = rng.choice(CITIES)
        users[user_id] = User(
            user_id=user_id,
            name=Name(first_name=first, last_name=last),
            address=Address(
                address1=f"{rng.randint(100, 999)} {rng.choice(STREETS)}",
                address2=rng.choice([None, None, f"Suite {rng.randint(100, 999)}", f"Apt {rng.randint(1, 99)}"]),
                city=city,
                country="USA",
                state=state,
                zip=zip_prefix + f"{rng.randint(0, 99):02d}",
            ),
            email=f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@example.com",
            dob=_dob(rng, last_year=2004),  # account holders are adults
            payment_methods=methods,
            saved_passengers=[_person(rng) for _ in range(rng.choice([0, 1, 1, 2]))],
            membership=rng.choices(list(MEMBERSHIP_WEIGHTS), weights=list(MEMBERSHIP_WEIGHTS.values()))[0],
            reservations=[],
        )
    return users


def _dob(rng: random.Random, first_year: int = 1940, last_year: int = 2018) -> str:
    return date(rng.randint(first_year, last_year), rng.randint(1, 12), rng.randint(1, 28)).isoformat()


def _person(rng: random.Random) -> Passenger:
    return Passenger(first_name=rng.choice(FIRST_NAMES), last_name=rng.choice(LAST_NAMES), dob=_dob(rng))


# -- reservations -----------------------------------------------------------------------------------
def _pay(rng: random.Random, user: User, total: int) -> list[Payment]:
    """Payments within the policy's limits: maybe one certificate, maybe one gift card, then a card."""
    methods = list(user.payment_methods.values())
    payments: list[Payment] = []
    left = total
    certificates = [m for m in methods if isinstance(m, Certificate)]
    if certificates and rng.random() < 0.35:
        certificate = rng.choice(certificates)
        used = min(int(certificate.amount), left)
        payments.append(Payment(payment_id=certificate.id, amount=used))
        del user.payment_methods[certificate.id]  # used up, whatever was left on it
        left -= used
    gifts = [m for m in methods if isinstance(m, GiftCard) and m.amount >= 1]
    if left and gifts and rng.random() < 0.5:
        gift = rng.choice(gifts)
        used = min(int(gift.amount), left)
        payments.append(Payment(payment_id=gift.id, amount=used))
        gift.amount -= used
        left -= used
    if left:
        card = rng.choice([m for m in methods if isinstance(m, CreditCard)])
        payments.append(Payment(payment_id=card.id, amount=left))
    return payments


def make_reservation(
    rng: random.Random, ids: _Ids, user: User, network: Network, fares: Fares
) -> Reservation | None:
    """One consistent reservation for ``user``, or None when the drawn itinerary does not exist."""
    start_flight = rng.choice(network.flights)
    start: Leg = (start_flight, rng.choice(list(start_flight.dates)))
    outbound = route(rng, network, start, one_stop=rng.random() < 0.3)
    if outbound is None:
        return None
    legs, flight_type = outbound, "one_way"
    if rng.random() < 0.5:
        back = return_route(rng, network, outbound)
        if back is not None:
            legs, flight_type = outbound + back, "round_trip"
    cabin: CabinClass = rng.choices(list(CABIN_WEIGHTS), weights=list(CABIN_WEIGHTS.values()))[0]
    segments = []
    for flight, day in legs:
        status = flight.dates[day]
        if isinstance(status, FlightDateStatusAvailable):
            price = status.prices[cabin]
        else:  # booked before it closed for sale: a fare around the flight's base fare
            price = round(fares[flight.flight_number][cabin] * rng.uniform(0.85, 1.15))
        segments.append(
            ReservationFlight(
                flight_number=flight.flight_number, origin=flight.origin, destination=flight.destination,
                date=day, price=price,
            )
        )  # fmt: skip
    count = rng.choices([1, 2, 3, 4, 5], weights=[50, 25, 12, 8, 5])[0]
    own = Passenger(first_name=user.name.first_name, last_name=user.name.last_name, dob=user.dob)
    people = ([own] if rng.random() < 0.75 else []) + list(user.saved_passengers)
    while len(people) < count:
        people.append(_person(rng))
    insurance = rng.random() < 0.35
    bags = sum(rng.choice([0, 0, 1, 1, 2]) for _ in range(count))
    nonfree = rules.nonfree_bags(user.membership, cabin, count, bags)
    total = rules.booking_total([s.price for s in segments], count, insurance, nonfree)
    departure = datetime.fromisoformat(f"{legs[0][1]}T{legs[0][0].scheduled_departure_time_est[:8]}")
    latest = min(CURRENT, departure - timedelta(hours=2))
    if departure > CURRENT + timedelta(days=1) and rng.random() < 0.12:
        created = CURRENT - timedelta(minutes=rng.randrange(30, 23 * 60))  # booked in the last 24 hours
    else:
        created = min(latest, CURRENT - timedelta(hours=25)) - timedelta(minutes=rng.randrange(0, 40 * 24 * 60))
    reservation = Reservation(
        reservation_id=ids.reservation(),
        user_id=user.user_id,
        origin=legs[0][0].origin,
        destination=outbound[-1][0].destination,
        flight_type=flight_type,
        cabin=cabin,
        flights=segments,
        passengers=people[:count],
        payment_history=_pay(rng, user, total),
        created_at=created.strftime("%Y-%m-%dT%H:%M:%S"),
        total_baggages=bags,
        nonfree_baggages=nonfree,
        insurance="yes" if insurance else "no",
    )
    if rng.random() < 0.08:
        refunds = [Payment(payment_id=p.payment_id, amount=-p.amount) for p in reservation.payment_history]
        reservation.payment_history.extend(refunds)
        reservation.status = "cancelled"
    return reservation


def generate_db(
    seed: int = 0, num_users: int = 50, num_flights: int = 60, days: int = 30, num_reservations: int | None = None
) -> FlightDB:
    """Build a consistent airline DB; the same arguments always give the same DB.

    Args:
        seed: Seeds every random choice.
        num_users: Customers to create.
        num_flights: Flights to schedule (in return pairs on random routes between 20 airports).
        days: Operating dates per flight, from 2024-05-01 (30 covers May 1-30, "now" is May 15).
        num_reservations: Reservations to create (default: two per user, fewer if no itinerary fits).
    """
    if num_users < 1 or num_flights < 2 or days < 1:
        raise ValueError(f"need num_users >= 1, num_flights >= 2 and days >= 1; got {num_users}, {num_flights}, {days}")
    with gc_paused():  # millions of objects and no garbage: see `eigendspy.core.gc_pause`
        rng = random.Random(seed)
        ids = _Ids(rng)
        flights, fares = _flights(rng, num_flights, days)
        users = _users(rng, ids, num_users)
        reservations: dict[str, Reservation] = {}
        user_list = list(users.values())
        network = Network(flights)
        wanted = 2 * num_users if num_reservations is None else num_reservations
        for _ in range(wanted):
            user = rng.choice(user_list)
            reservation = make_reservation(rng, ids, user, network, fares)
            if reservation is not None:
                reservations[reservation.reservation_id] = reservation
                user.reservations.append(reservation.reservation_id)
        return FlightDB(flights=flights, users=users, reservations=reservations)
