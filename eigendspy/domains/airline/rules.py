"""The built-in airline policy (``policy.md``) as pure, typed functions over the DB models.

Why: the tools are tau2-exact and, like tau2's, enforce none of the policy -- a model can book
six passengers or refund a non-refundable ticket, and only the checker notices. Task generators
and validators need the policy in executable form to decide what the *right* outcome of a
request is (allowed, refused, how many free bags, how much compensation), so every rule of
``policy.md`` that can be decided from the data lives here, once. Functions that can refuse
return ``(allowed, reason)``; the reason is a sentence a validator can show a model.

Nothing here writes to the DB; arguments are models (or DB views), never raw JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from eigendspy.domains.airline.db import (
    NOW,
    CabinClass,
    Certificate,
    CreditCard,
    GiftCard,
    Membership,
    Payment,
    Reservation,
    User,
)

CURRENT_TIME = datetime.fromisoformat(NOW)
"""The policy's "now" (2024-05-15 15:00 EST), the same instant tau2's tools stamp bookings with."""

MAX_PASSENGERS = 5
BAG_FEE = 50
INSURANCE_FEE = 30
FREE_CANCELLATION_WINDOW = timedelta(hours=24)
MAX_PAYMENT_METHODS: dict[str, int] = {"certificate": 1, "credit_card": 1, "gift_card": 3}
"""At most this many methods of each kind may pay for one booking."""

FREE_BAGS: dict[Membership, dict[CabinClass, int]] = {
    "regular": {"basic_economy": 0, "economy": 1, "business": 2},
    "silver": {"basic_economy": 1, "economy": 2, "business": 3},
    "gold": {"basic_economy": 2, "economy": 3, "business": 4},
}
"""Free checked bags per passenger, by the booking user's membership and the cabin."""

CancelReason = Literal["change of plan", "airline cancelled flight", "health", "weather", "other"]
CANCEL_REASONS: tuple[CancelReason, ...] = ("change of plan", "airline cancelled flight", "health", "weather", "other")
INSURED_REASONS: frozenset[str] = frozenset({"health", "weather"})
"""Reasons travel insurance covers (full refund)."""

FLOWN = frozenset({"flying", "landed"})
"""Flight-date statuses that mean the segment has (at least partly) been flown."""

COMPENSATION_PER_PASSENGER: dict[str, int] = {"cancelled": 100, "delayed": 50}
"""Certificate value per passenger, by what went wrong with the flight."""

FlightStatuses = Mapping[tuple[str, str], str]
"""``{(flight_number, date): status}`` for the segments of a reservation."""

Verdict = tuple[bool, str]


# -- reading the world ------------------------------------------------------------------------------
def flight_statuses(db: Any, reservation: Reservation) -> dict[tuple[str, str], str]:
    """The current status of each segment of ``reservation``, read from a DB (model or view).

    A segment whose flight or date is missing from the DB is reported as ``"unknown"``.
    """
    out: dict[tuple[str, str], str] = {}
    for segment in reservation.flights:
        flight = db.flights.get(segment.flight_number)
        status = flight.dates.get(segment.date) if flight is not None else None
        out[(segment.flight_number, segment.date)] = status.status if status is not None else "unknown"
    return out


def _segment_statuses(reservation: Reservation, statuses: FlightStatuses) -> list[str]:
    return [statuses.get((f.flight_number, f.date), "unknown") for f in reservation.flights]


def has_flown(reservation: Reservation, statuses: FlightStatuses) -> bool:
    """Whether any segment has taken off (status ``flying`` or ``landed``)."""
    return any(status in FLOWN for status in _segment_statuses(reservation, statuses))


def booked_within(reservation: Reservation, now: datetime, window: timedelta = FREE_CANCELLATION_WINDOW) -> bool:
    """Whether the reservation was created no more than ``window`` before ``now``."""
    created = datetime.fromisoformat(reservation.created_at)
    return timedelta(0) <= now - created <= window


# -- baggage -----------------------------------------------------------------------------------------
def free_bag_allowance(membership: Membership, cabin: CabinClass) -> int:
    """Free checked bags *per passenger* for a booking user's membership and the cabin."""
    return FREE_BAGS[membership][cabin]


def nonfree_bags(membership: Membership, cabin: CabinClass, passengers: int, total_bags: int) -> int:
    """How many of ``total_bags`` must be paid for (the allowance counts per passenger)."""
    return max(0, total_bags - free_bag_allowance(membership, cabin) * passengers)


def can_change_baggage(reservation: Reservation, total_bags: int) -> Verdict:
    """Bags may be added to an active reservation but never removed."""
    if reservation.status == "cancelled":
        return False, "The reservation is cancelled."
    if total_bags < reservation.total_baggages:
        return False, "Checked bags can be added but not removed."
    return True, "Bags can be added; each bag beyond the free allowance costs $50."


# -- booking and payment -----------------------------------------------------------------------------
def booking_total(segment_prices: Sequence[int], passengers: int, insurance: bool, nonfree: int) -> int:
    """What a booking costs: fares per passenger, insurance per passenger, and paid bags."""
    return sum(segment_prices) * passengers + (INSURANCE_FEE * passengers if insurance else 0) + BAG_FEE * nonfree


def can_book(passengers: int, cabins: Iterable[CabinClass]) -> Verdict:
    """One to five passengers, all in one cabin on every segment."""
    if not 1 <= passengers <= MAX_PASSENGERS:
        return False, f"A reservation holds between 1 and {MAX_PASSENGERS} passengers."
    if len(set(cabins)) > 1:
        return False, "Every segment of a reservation must be in the same cabin."
    return True, "The booking is allowed."


def valid_payment_split(user: User, payment_methods: Sequence[Payment]) -> Verdict:
    """Whether a booking's payments respect the policy.

    All methods must be in the user's profile, used once each, with positive amounts; at most
    one certificate, one credit card and three gift cards; a gift card or certificate must hold
    at least the amount taken from it.
    """
    if not payment_methods:
        return False, "At least one payment method is needed."
    ids = [p.payment_id for p in payment_methods]
    if len(set(ids)) != len(ids):
        return False, "Each payment method can appear only once."
    kinds: Counter[str] = Counter()
    for payment in payment_methods:
        method = user.payment_methods.get(payment.payment_id)
        if method is None:
            return False, f"Payment method {payment.payment_id} is not in the user's profile."
        if payment.amount <= 0:
            return False, "Every payment amount must be positive."
        if isinstance(method, (GiftCard, Certificate)) and method.amount < payment.amount:
            return False, f"{payment.payment_id} holds only ${method.amount:g}."
        kinds[method.source] += 1
    for kind, limit in MAX_PAYMENT_METHODS.items():
        if kinds[kind] > limit:
            noun = kind.replace("_", " ")
            return False, f"At most {limit} {noun}{'s' if limit > 1 else ''} may pay for one reservation."
    return True, "The payment split is allowed."


def valid_update_payment(user: User, payment_id: str) -> Verdict:
    """Changes are paid (or refunded) with exactly one credit card or gift card from the profile."""
    method = user.payment_methods.get(payment_id)
    if method is None:
        return False, f"Payment method {payment_id} is not in the user's profile."
    if not isinstance(method, (CreditCard, GiftCard)):
        return False, "Changes must be paid with a credit card or a gift card, not a certificate."
    return True, "The payment method can be used for the change."


# -- changes -----------------------------------------------------------------------------------------
def can_change_flights(reservation: Reservation, statuses: FlightStatuses | None = None) -> Verdict:
    """Whether the flights (dates or flight numbers) of a reservation may be changed.

    Basic economy tickets never; otherwise only while the reservation is active and, when
    ``statuses`` are given, no segment has been flown.
    """
    if reservation.status == "cancelled":
        return False, "The reservation is cancelled."
    if reservation.cabin == "basic_economy":
        return False, "Basic economy flights cannot be changed."
    if statuses is not None and has_flown(reservation, statuses):
        return False, "Part of the trip has already been flown."
    return True, "The flights can be changed (same origin, destination and trip type)."


def keeps_route(reservation: Reservation, segments: Sequence[tuple[str, str]]) -> Verdict:
    """Whether a new itinerary (``(origin, destination)`` per segment) keeps the trip's route.

    The legs must connect; a one-way trip goes from the reservation's origin to its destination;
    a round trip starts and ends at the origin and passes through the destination.
    """
    if not segments:
        return False, "The new itinerary has no flights."
    if any(a[1] != b[0] for a, b in zip(segments, segments[1:], strict=False)):
        return False, "The flights of the new itinerary do not connect."
    stops = [segments[0][0]] + [leg[1] for leg in segments]
    if stops[0] != reservation.origin:
        return False, "The new itinerary must start at the original origin."
    if reservation.flight_type == "one_way":
        ok = stops[-1] == reservation.destination
    else:
        ok = stops[-1] == reservation.origin and reservation.destination in stops[1:-1]
    if not ok:
        return False, "Origin, destination and trip type cannot change."
    return True, "The route is unchanged."


def can_change_cabin(reservation: Reservation, statuses: FlightStatuses) -> Verdict:
    """Any cabin (basic economy included) may change, for the whole trip, before anything is flown."""
    if reservation.status == "cancelled":
        return False, "The reservation is cancelled."
    if has_flown(reservation, statuses):
        return False, "The cabin cannot change once part of the trip has been flown."
    return True, "The cabin can be changed for every flight of the reservation."


def can_change_passengers(reservation: Reservation, passengers: Sequence[Any]) -> Verdict:
    """Passenger details may change, their number may not."""
    if reservation.status == "cancelled":
        return False, "The reservation is cancelled."
    if len(passengers) != len(reservation.passengers):
        return False, "The number of passengers cannot change."
    return True, "The passenger details can be updated."


# -- cancellation ------------------------------------------------------------------------------------
def can_cancel(
    reservation: Reservation, now: datetime, reason: CancelReason | str, statuses: FlightStatuses
) -> Verdict:
    """Whether the agent may cancel the whole reservation for a full refund.

    Never once any segment was flown (that goes to a human). Otherwise allowed if it was booked
    within the last 24 hours, the airline cancelled one of its flights, it is business class, or
    it is insured and the reason is covered (health or weather).
    """
    if reservation.status == "cancelled":
        return False, "The reservation is already cancelled."
    if has_flown(reservation, statuses):
        return False, "Part of the trip has already been flown; only a human agent can help."
    if booked_within(reservation, now):
        return True, "Booked within the last 24 hours."
    if "cancelled" in _segment_statuses(reservation, statuses):
        return True, "The airline cancelled a flight of this reservation."
    if reservation.cabin == "business":
        return True, "Business class reservations can always be cancelled before departure."
    if reservation.insurance == "yes" and reason in INSURED_REASONS:
        return True, f"Travel insurance covers cancellation for {reason} reasons."
    return False, "Cancellation is not allowed: booked over 24 hours ago and not covered by any exception."


# -- compensation ------------------------------------------------------------------------------------
def compensation(
    user: User, reservation: Reservation, problem: Literal["cancelled", "delayed"], *, changed_or_cancelled: bool
) -> int:
    """The certificate amount the agent may offer when the customer asks for compensation (0: none).

    Only silver or gold members, insured reservations or business class qualify. A cancelled
    flight earns $100 per passenger; a delayed one $50 per passenger, and only after the
    reservation was changed or cancelled at the customer's request.
    """
    eligible = user.membership in ("silver", "gold") or reservation.insurance == "yes"
    eligible = eligible or reservation.cabin == "business"
    if not eligible or (problem == "delayed" and not changed_or_cancelled):
        return 0
    return COMPENSATION_PER_PASSENGER[problem] * len(reservation.passengers)
