"""Airline read tools and the lookups every airline tool shares.

Read tools get a read-only view of the shared DB and return its rows (or fresh result models)
for the environment to serialize; they never mutate what they read. Lookups raise `ToolError`
with tau2-bench's exact messages, which name the id that was not found.
"""

from __future__ import annotations

from eigendspy.core.domain import ToolError, tool
from eigendspy.domains.airline.db import (
    AirportCode,
    DirectFlight,
    Flight,
    FlightDateStatus,
    FlightDateStatusAvailable,
    FlightDB,
    Reservation,
    User,
)

AIRPORTS: tuple[tuple[str, str], ...] = (
    ("SFO", "San Francisco"),
    ("JFK", "New York"),
    ("LAX", "Los Angeles"),
    ("ORD", "Chicago"),
    ("DFW", "Dallas"),
    ("DEN", "Denver"),
    ("SEA", "Seattle"),
    ("ATL", "Atlanta"),
    ("MIA", "Miami"),
    ("BOS", "Boston"),
    ("PHX", "Phoenix"),
    ("IAH", "Houston"),
    ("LAS", "Las Vegas"),
    ("MCO", "Orlando"),
    ("EWR", "Newark"),
    ("CLT", "Charlotte"),
    ("MSP", "Minneapolis"),
    ("DTW", "Detroit"),
    ("PHL", "Philadelphia"),
    ("LGA", "LaGuardia"),
)
"""The fixed airport list tau2's ``list_all_airports`` answers with, whatever the DB holds."""


# -- lookups (shared by read and write tools) -------------------------------------------------------
def lookup_user(db: FlightDB, user_id: str) -> User:
    if user_id not in db.users:
        raise ToolError(f"User {user_id} not found")
    return db.users[user_id]


def lookup_reservation(db: FlightDB, reservation_id: str) -> Reservation:
    if reservation_id not in db.reservations:
        raise ToolError(f"Reservation {reservation_id} not found")
    return db.reservations[reservation_id]


def lookup_flight(db: FlightDB, flight_number: str) -> Flight:
    if flight_number not in db.flights:
        raise ToolError(f"Flight {flight_number} not found")
    return db.flights[flight_number]


def lookup_flight_date(db: FlightDB, flight_number: str, date: str) -> FlightDateStatus:
    flight = lookup_flight(db, flight_number)
    if date not in flight.dates:
        raise ToolError(f"Flight {flight_number} not found on date {date}")
    return flight.dates[date]


def bookable(db: FlightDB, flight_number: str, date: str) -> FlightDateStatusAvailable:
    """The flight-date if it is open for sale; only ``available`` dates can be booked."""
    status = lookup_flight_date(db, flight_number, date)
    if not isinstance(status, FlightDateStatusAvailable):
        raise ToolError(f"Flight {flight_number} not available on date {date}")
    return status


def _result(flight: Flight, status: FlightDateStatusAvailable, date: str | None) -> DirectFlight:
    """A search hit: the route plus that date's seats and prices (copied, never shared)."""
    return DirectFlight(
        flight_number=flight.flight_number,
        origin=flight.origin,
        destination=flight.destination,
        scheduled_departure_time_est=flight.scheduled_departure_time_est,
        scheduled_arrival_time_est=flight.scheduled_arrival_time_est,
        available_seats=dict(status.available_seats),
        prices=dict(status.prices),
        date=date,
    )


def _available_on(flight: Flight, date: str) -> FlightDateStatusAvailable | None:
    status = flight.dates.get(date)
    return status if isinstance(status, FlightDateStatusAvailable) else None


def next_day(date: str) -> str:
    """tau2's next-day date for overnight first legs: same month, day + 1, *no* zero padding.

    ``2024-05-08`` gives ``2024-05-9`` (which matches no flight date) and ``2024-05-31`` gives
    ``2024-05-32``; reproduced on purpose so searches return what tau2 returns.
    """
    return f"2024-05-{int(date[-2:]) + 1}"


# -- tools ------------------------------------------------------------------------------------------
@tool(kind="read")
def get_user_details(db: FlightDB, user_id: str) -> User:
    """Get the details of a user, including their reservations.

    Args:
        user_id: The user ID, such as 'sara_doe_496'.

    Returns:
        The user details.
    """
    return lookup_user(db, user_id)


@tool(kind="read")
def get_reservation_details(db: FlightDB, reservation_id: str) -> Reservation:
    """Get the details of a reservation.

    Args:
        reservation_id: The reservation ID, such as '8JX2WO'.

    Returns:
        The reservation details.
    """
    return lookup_reservation(db, reservation_id)


@tool(kind="read")
def list_all_airports(db: FlightDB) -> list[AirportCode]:
    """Returns a list of all available airports.

    Returns:
        The airports' IATA codes and cities.
    """
    return [AirportCode(iata=iata, city=city) for iata, city in AIRPORTS]


@tool(kind="read")
def search_direct_flight(db: FlightDB, origin: str, destination: str, date: str) -> list[DirectFlight]:
    """Search for direct flights between two cities on a specific date.

    Args:
        origin: The origin city airport in three letters, such as 'JFK'.
        destination: The destination city airport in three letters, such as 'LAX'.
        date: The date of the flight in the format 'YYYY-MM-DD', such as '2024-01-01'.

    Returns:
        The bookable flights, with seats and prices (their ``date`` is left empty, as in tau2).
    """
    hits = []
    for flight in db.flights.values():  # one table view for the scan, not one per flight
        if flight.origin != origin or flight.destination != destination:
            continue
        status = _available_on(flight, date)
        if status is not None:
            hits.append(_result(flight, status, None))
    return hits


@tool(kind="read")
def search_onestop_flight(db: FlightDB, origin: str, destination: str, date: str) -> list[list[DirectFlight]]:
    """Search for one-stop flights between two cities on a specific date.

    Args:
        origin: The origin city airport in three letters, such as 'JFK'.
        destination: The destination city airport in three letters, such as 'LAX'.
        date: The date of the flight in the format 'YYYY-MM-DD', such as '2024-05-01'.

    Returns:
        Pairs of bookable legs; the second leg departs no earlier than the first arrives.
    """
    flights = [db.flights[number] for number in db.flights]
    pairs = []
    for first in flights:
        if first.origin != origin:
            continue
        first_status = _available_on(first, date)
        if first_status is None:
            continue
        overnight = "+1" in first.scheduled_arrival_time_est
        second_date = next_day(date) if overnight else date
        for second in flights:
            if second.origin != first.destination or second.destination != destination:
                continue
            second_status = _available_on(second, second_date)
            if second_status is None:
                continue
            # tau2 compares the time strings as they are, "+1" suffix included.
            if second.scheduled_departure_time_est < first.scheduled_arrival_time_est:
                continue
            pairs.append([_result(first, first_status, date), _result(second, second_status, second_date)])
    return pairs


@tool(kind="read")
def get_flight_status(db: FlightDB, flight_number: str, date: str) -> str:
    """Get the status of a flight.

    Args:
        flight_number: The flight number.
        date: The date of the flight.

    Returns:
        The status of the flight on that date (e.g. 'available', 'delayed', 'landed').
    """
    return lookup_flight_date(db, flight_number, date).status
