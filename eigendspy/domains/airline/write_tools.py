"""Airline write tools: book, change and cancel reservations, and send certificates.

Each tool runs every check before it writes anything (in tau2's order, so the first failing
check gives tau2's message) and then edits the private row copies the environment hands a write
tool. The tools enforce bookkeeping only -- ids, seats, balances, sums -- never the policy
(passenger limits, basic-economy rules, 24-hour cancellation...): tau2's tools do not either, and
the policy lives in `eigendspy.domains.airline.rules`. tau2's quirks are kept on purpose; see this
folder's README.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, TypeAdapter

from eigendspy.core.domain import ToolError, tool
from eigendspy.domains.airline.db import (
    NOW,
    CabinClass,
    Certificate,
    FlightDB,
    FlightInfo,
    FlightType,
    GiftCard,
    Insurance,
    Passenger,
    Payment,
    Reservation,
    ReservationFlight,
    User,
)
from eigendspy.domains.airline.read_tools import bookable, lookup_flight, lookup_reservation, lookup_user

NEW_RESERVATION_IDS = ("HATHAT", "HATHAU", "HATHAV")
"""tau2 mints no random ids: a new reservation takes the first of these not yet in the DB."""

NEW_CERTIFICATE_IDS = ("certificate_3221322", "certificate_3221323", "certificate_3221324")
"""Likewise for certificates: the first of these the user does not hold yet."""

INSURANCE_FEE = 30
"""Dollars per passenger for travel insurance."""

BAG_FEE = 50
"""Dollars per checked bag beyond the free allowance."""

_M = TypeVar("_M", bound=BaseModel)
_CABIN = TypeAdapter(CabinClass)


def _parse(model: type[_M], items: list[_M | dict]) -> list[_M]:
    """Tool arguments arrive as plain JSON; invalid entries raise pydantic's error, as in tau2."""
    return [item if isinstance(item, model) else model.model_validate(item) for item in items]


def _charge_for_update(user: User, payment_id: str, amount: int) -> Payment | None:
    """Check and apply the payment of a change: a credit card or gift card, never a certificate.

    The method is checked even when nothing is owed. A gift card pays a positive amount (and is
    credited a negative one) at once; the returned history entry is ``None`` when the amount is 0.
    """
    method = user.payment_methods.get(payment_id)
    if method is None:
        raise ToolError("Payment method not found")
    if isinstance(method, Certificate):
        raise ToolError("Certificate cannot be used to update reservation")
    if isinstance(method, GiftCard) and method.amount < amount:
        raise ToolError("Gift card balance is not enough")
    if amount == 0:
        return None
    if isinstance(method, GiftCard):
        method.amount -= amount
    return Payment(payment_id=payment_id, amount=amount)


@tool(kind="write")
def book_reservation(
    db: FlightDB,
    user_id: str,
    origin: str,
    destination: str,
    flight_type: FlightType,
    cabin: CabinClass,
    flights: list[FlightInfo | dict],
    passengers: list[Passenger | dict],
    payment_methods: list[Payment | dict],
    total_baggages: int,
    nonfree_baggages: int,
    insurance: Insurance,
) -> Reservation:
    """Book a reservation.

    Args:
        user_id: The ID of the user to book the reservation such as 'sara_doe_496'`.
        origin: The IATA code for the origin city such as 'SFO'.
        destination: The IATA code for the destination city such as 'JFK'.
        flight_type: The type of flight such as 'one_way' or 'round_trip'.
        cabin: The cabin class such as 'basic_economy', 'economy', or 'business'.
        flights: An array of objects containing details about each piece of flight.
        passengers: An array of objects containing details about each passenger.
        payment_methods: An array of objects containing details about each payment method.
        total_baggages: The total number of baggage items to book the reservation.
        nonfree_baggages: The number of non-free baggage items to book the reservation.
        insurance: Whether the reservation has insurance.

    Returns:
        The new reservation.
    """
    segments = _parse(FlightInfo, flights)
    travellers = _parse(Passenger, passengers)
    payments = _parse(Payment, payment_methods)
    user = lookup_user(db, user_id)
    reservation_id = next((rid for rid in NEW_RESERVATION_IDS if rid not in db.reservations), None)
    if reservation_id is None:
        raise ToolError("Too many reservations")
    reservation = Reservation(
        reservation_id=reservation_id,
        user_id=user_id,
        origin=origin,
        destination=destination,
        flight_type=flight_type,
        cabin=cabin,
        flights=[],
        passengers=travellers,
        payment_history=payments,
        created_at=NOW,
        total_baggages=total_baggages,
        nonfree_baggages=nonfree_baggages,
        insurance=insurance,
    )
    count = len(travellers)
    total = 0
    dates = []
    for segment in segments:
        flight = lookup_flight(db, segment.flight_number)
        status = bookable(db, segment.flight_number, segment.date)
        if status.available_seats[cabin] < count:
            raise ToolError(f"Not enough seats on flight {segment.flight_number}")
        price = status.prices[cabin]
        reservation.flights.append(
            ReservationFlight(
                flight_number=segment.flight_number,
                origin=flight.origin,
                destination=flight.destination,
                date=segment.date,
                price=price,
            )
        )
        dates.append(status)
        total += price * count
    if insurance == "yes":
        total += INSURANCE_FEE * count
    total += BAG_FEE * nonfree_baggages
    for payment in payments:
        method = user.payment_methods.get(payment.payment_id)
        if method is None:
            raise ToolError(f"Payment method {payment.payment_id} not found")
        if isinstance(method, (GiftCard, Certificate)) and method.amount < payment.amount:
            raise ToolError(f"Not enough balance in payment method {payment.payment_id}")
    paid = sum(payment.amount for payment in payments)
    if paid != total:
        raise ToolError(f"Payment amount does not add up, total price is {total}, but paid {paid}")
    # Every check passed: now write.
    for payment in payments:
        method = user.payment_methods.get(payment.payment_id)
        if isinstance(method, GiftCard):
            method.amount -= payment.amount
        elif isinstance(method, Certificate):
            # A certificate is used up by the booking, whatever is left on it.
            user.payment_methods.pop(payment.payment_id, None)
    for status in dates:
        status.available_seats[cabin] -= count
    db.reservations[reservation_id] = reservation
    user.reservations.append(reservation_id)
    return reservation


@tool(kind="write")
def cancel_reservation(db: FlightDB, reservation_id: str) -> Reservation:
    """Cancel the whole reservation.

    Args:
        reservation_id: The reservation ID, such as 'ZFA04Y'.

    Returns:
        The updated reservation.
    """
    reservation = lookup_reservation(db, reservation_id)
    # tau2 refunds every entry of the history (earlier refunds included) and checks no status,
    # so a second cancellation doubles the refunds. Seats and gift cards are left as they are.
    refunds = [Payment(payment_id=p.payment_id, amount=-p.amount) for p in reservation.payment_history]
    reservation.payment_history.extend(refunds)
    reservation.status = "cancelled"
    return reservation


@tool(kind="write")
def send_certificate(db: FlightDB, user_id: str, amount: int) -> str:
    """Send a certificate to a user. Be careful!

    Args:
        user_id: The ID of the user to book the reservation, such as 'sara_doe_496'.
        amount: The amount of the certificate to send.

    Returns:
        A confirmation naming the new certificate.
    """
    user = lookup_user(db, user_id)
    for certificate_id in NEW_CERTIFICATE_IDS:
        if certificate_id not in user.payment_methods:
            user.payment_methods[certificate_id] = Certificate(id=certificate_id, amount=amount)
            # The message repeats the amount exactly as passed (e.g. "300" for a string).
            return f"Certificate {certificate_id} added to user {user_id} with amount {amount}."
    raise ToolError("Too many certificates")


@tool(kind="write")
def update_reservation_baggages(
    db: FlightDB, reservation_id: str, total_baggages: int, nonfree_baggages: int, payment_id: str
) -> Reservation:
    """Update the baggage information of a reservation.

    Args:
        reservation_id: The reservation ID, such as 'ZFA04Y'
        total_baggages: The updated total number of baggage items included in the reservation.
        nonfree_baggages: The updated number of non-free baggage items included in the reservation.
        payment_id: The payment id stored in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.

    Returns:
        The updated reservation.
    """  # noqa: E501
    reservation = lookup_reservation(db, reservation_id)
    user = lookup_user(db, reservation.user_id)
    # Only added non-free bags cost money; removing bags refunds nothing.
    fee = BAG_FEE * max(0, nonfree_baggages - reservation.nonfree_baggages)
    entry = _charge_for_update(user, payment_id, fee)
    reservation.total_baggages = total_baggages
    reservation.nonfree_baggages = nonfree_baggages
    if entry is not None:
        reservation.payment_history.append(entry)
    return reservation


@tool(kind="write")
def update_reservation_flights(
    db: FlightDB, reservation_id: str, cabin: CabinClass, flights: list[FlightInfo | dict], payment_id: str
) -> Reservation:
    """Update the flight information of a reservation.

    Args:
        reservation_id: The reservation ID, such as 'ZFA04Y'.
        cabin: The cabin class of the reservation
        flights: An array of objects containing details about each piece of flight in the ENTIRE new reservation. Even if the a flight segment is not changed, it should still be included in the array.
        payment_id: The payment id stored in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.

    Returns:
        The updated reservation.
    """  # noqa: E501
    reservation = lookup_reservation(db, reservation_id)
    user = lookup_user(db, reservation.user_id)
    cabin = _CABIN.validate_python(cabin)
    segments = _parse(FlightInfo, flights)
    count = len(reservation.passengers)
    new_flights: list[ReservationFlight] = []
    for segment in segments:
        # A segment is kept at its old price only if flight, date *and* cabin are unchanged;
        # kept segments are not re-checked (they may have flown already).
        kept = next(
            (
                f
                for f in reservation.flights
                if f.flight_number == segment.flight_number and f.date == segment.date and cabin == reservation.cabin
            ),
            None,
        )
        if kept is not None:
            new_flights.append(kept.model_copy())
            continue
        flight = lookup_flight(db, segment.flight_number)
        status = bookable(db, segment.flight_number, segment.date)
        if status.available_seats[cabin] < count:
            raise ToolError(f"Not enough seats on flight {segment.flight_number}")
        new_flights.append(
            ReservationFlight(
                flight_number=segment.flight_number,
                origin=flight.origin,
                destination=flight.destination,
                date=segment.date,
                price=status.prices[cabin],
            )
        )
    difference = (sum(f.price for f in new_flights) - sum(f.price for f in reservation.flights)) * count
    entry = _charge_for_update(user, payment_id, difference)
    # Seats are neither taken on the new flights nor released on the old ones (as in tau2).
    reservation.flights = new_flights
    reservation.cabin = cabin
    if entry is not None:
        reservation.payment_history.append(entry)
    return reservation


@tool(kind="write")
def update_reservation_passengers(db: FlightDB, reservation_id: str, passengers: list[Passenger | dict]) -> Reservation:
    """Update the passenger information of a reservation.

    Args:
        reservation_id: The reservation ID, such as 'ZFA04Y'.
        passengers: An array of objects containing details about each passenger.

    Returns:
        The updated reservation.
    """
    travellers = _parse(Passenger, passengers)
    reservation = lookup_reservation(db, reservation_id)
    if len(travellers) != len(reservation.passengers):
        raise ToolError("Number of passengers does not match")
    reservation.passengers = travellers
    return reservation
