"""Itinerary search over a generated airline schedule: direct, one-stop and return legs.

Why its own file: the generator draws thousands of reservations, and each one used to index
every flight afresh (quadratic in the DB's size). `Network` indexes the flights once, by route,
keeping their order, so each draw only looks at the flights of the routes it needs and every
random choice sees the same candidates as before (the same DB for the same seed).
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from eigendspy.domains.airline.db import Flight

Leg = tuple[Flight, str]
"""A flight on a date (``YYYY-MM-DD``)."""


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def minutes(clock: str) -> int:
    """Minutes after midnight of the departure day from a tau2 clock (``+1`` = next day)."""
    hours, mins, _ = clock.removesuffix("+1").split(":")
    return int(hours) * 60 + int(mins) + (24 * 60 if clock.endswith("+1") else 0)


class Network:
    """The flights indexed once for itinerary search (an index per reservation made it quadratic).

    Every list keeps the flights' insertion order, so each random choice sees exactly the
    candidates, in the order, that a scan of all flights would give: the DB for a seed is unchanged.
    """

    def __init__(self, flights: dict[str, Flight]) -> None:
        self.flights = list(flights.values())
        self.by_pair: dict[tuple[str, str], list[Flight]] = {}
        destinations: dict[str, set[str]] = {}
        for flight in self.flights:
            self.by_pair.setdefault((flight.origin, flight.destination), []).append(flight)
            destinations.setdefault(flight.origin, set()).add(flight.destination)
        self.destinations = {origin: sorted(found) for origin, found in destinations.items()}

    def between(self, origin: str, destination: str) -> list[Flight]:
        return self.by_pair.get((origin, destination), [])


def connection(rng: random.Random, first: Leg, network: Network, destination: str) -> Leg | None:
    """A second leg to ``destination`` leaving at least an hour after ``first`` lands."""
    flight, day = first
    arrival = minutes(flight.scheduled_arrival_time_est)
    day2, ready = (_shift(day, 1), arrival - 24 * 60 + 60) if arrival >= 24 * 60 else (day, arrival + 60)
    options = [
        f
        for f in network.between(flight.destination, destination)
        if day2 in f.dates and minutes(f.scheduled_departure_time_est) >= ready
    ]
    return (rng.choice(options), day2) if options else None


def route(rng: random.Random, network: Network, start: Leg, one_stop: bool) -> list[Leg] | None:
    """Outbound legs from ``start``: the flight itself, or it plus a connection onwards."""
    if not one_stop:
        return [start]
    hub = start[0].destination
    targets = [d for d in network.destinations.get(hub, []) if d != start[0].origin]
    if not targets:
        return None
    second = connection(rng, start, network, rng.choice(targets))
    return [start, second] if second else None


def return_route(rng: random.Random, network: Network, outbound: list[Leg]) -> list[Leg] | None:
    """The way back, a few days later, over the same airports in reverse."""
    stops = [outbound[0][0].origin] + [leg[0].destination for leg in outbound]
    day = _shift(outbound[-1][1], rng.randint(1, 6))
    first = [f for f in network.between(stops[-1], stops[-2]) if day in f.dates]
    if not first:
        return None
    legs: list[Leg] = [(rng.choice(first), day)]
    for stop in reversed(stops[:-2]):
        nxt = connection(rng, legs[-1], network, stop)
        if nxt is None:
            return None
        legs.append(nxt)
    return legs
