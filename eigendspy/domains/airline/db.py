"""Airline domain data model: flights with a status per date, customers, and their reservations.

The models follow tau2-bench's airline ``FlightDB`` field for field, because tau2's DB check
hashes ``model_dump()`` and the tools print models with ``json.dumps`` (no key sorting): field
names, field order, optional fields (``address2``, a reservation's ``status``) and number types
(gift-card and certificate ``amount`` is a float, prices and payments are ints) must all match.
Times and dates are plain strings, as in tau2 (``"2024-05-15T15:00:00"``, ``"04:00:00+1"``).

Three small models -- `FlightInfo`, `Passenger` and `Payment` -- double as tool-argument types,
so their JSON schema is part of what the model sees. They therefore carry no class docstring
(pydantic would publish it as a schema ``description`` that tau2's schemas do not have).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

CabinClass = Literal["business", "economy", "basic_economy"]
"""The three cabins, in tau2's order (validation messages list them in this order)."""

CABINS: tuple[CabinClass, ...] = ("business", "economy", "basic_economy")

FlightType = Literal["round_trip", "one_way"]
Insurance = Literal["yes", "no"]
Membership = Literal["gold", "silver", "regular"]
FlightStatus = Literal["available", "delayed", "on time", "flying", "landed", "cancelled"]

NOW = "2024-05-15T15:00:00"
"""tau2's fixed "current time" of the airline world (new reservations are stamped with it)."""


# -- airports and flights -----------------------------------------------------------------------
class AirportCode(BaseModel):
    """One entry of ``list_all_airports``."""

    iata: str = Field(description="IATA code")
    city: str = Field(description="City name")


class FlightDateStatusAvailable(BaseModel):
    """Not yet departed and open for sale: seats left and the current price, per cabin."""

    status: Literal["available"] = "available"
    available_seats: dict[CabinClass, int] = Field(description="Seats left per cabin")
    prices: dict[CabinClass, int] = Field(description="Current price per seat per cabin, in dollars")


class FlightDateStatusOnTime(BaseModel):
    """Closed for sale, expected to leave on schedule."""

    status: Literal["on time"] = "on time"
    estimated_departure_time_est: str
    estimated_arrival_time_est: str


class FlightDateStatusDelayed(BaseModel):
    """Closed for sale, expected to leave late."""

    status: Literal["delayed"] = "delayed"
    estimated_departure_time_est: str
    estimated_arrival_time_est: str


class FlightDateStatusFlying(BaseModel):
    """In the air: departed at a known time, landing at an estimated one."""

    status: Literal["flying"] = "flying"
    actual_departure_time_est: str
    estimated_arrival_time_est: str


class FlightDateStatusLanded(BaseModel):
    """Flown: both actual times known."""

    status: Literal["landed"] = "landed"
    actual_departure_time_est: str
    actual_arrival_time_est: str


class FlightDateStatusCancelled(BaseModel):
    """Cancelled by the airline on that date."""

    status: Literal["cancelled"] = "cancelled"


FlightDateStatus = Annotated[
    FlightDateStatusAvailable
    | FlightDateStatusOnTime
    | FlightDateStatusDelayed
    | FlightDateStatusFlying
    | FlightDateStatusLanded
    | FlightDateStatusCancelled,
    Field(discriminator="status"),
]
"""What a flight looks like on one date; the ``status`` field says which variant it is."""


class FlightBase(BaseModel):
    """A scheduled route; times are local, ``+1`` marks an arrival on the next day."""

    flight_number: str = Field(description="Unique flight number, such as 'HAT001'")
    origin: str = Field(description="IATA code of the departure airport")
    destination: str = Field(description="IATA code of the arrival airport")
    scheduled_departure_time_est: str = Field(description="Scheduled departure, e.g. '06:00:00'")
    scheduled_arrival_time_est: str = Field(description="Scheduled arrival, e.g. '07:00:00' or '04:00:00+1'")


class Flight(FlightBase):
    """A route and its status on every date it operates."""

    dates: dict[str, FlightDateStatus] = Field(description="Status per date ('YYYY-MM-DD')")


class DirectFlight(BaseModel):
    """A search result: one bookable flight-date (``date`` is filled in only by one-stop searches).

    Its own field order (status before the times, date before seats) is what tau2 prints.
    """

    flight_number: str
    origin: str
    destination: str
    status: Literal["available"] = "available"
    scheduled_departure_time_est: str
    scheduled_arrival_time_est: str
    date: str | None = None
    available_seats: dict[CabinClass, int]
    prices: dict[CabinClass, int]


# -- models shared with tool arguments (no class docstrings: see the module docstring) -----------
# A flight segment as the agent names it: which flight, which day.
class FlightInfo(BaseModel):
    flight_number: str = Field(description="Flight number, such as 'HAT001'.")
    date: str = Field(description="The date for the flight in the format 'YYYY-MM-DD', such as '2024-05-01'.")


# A traveller on a reservation (also a user's saved passenger).
class Passenger(BaseModel):
    first_name: str = Field(description="Passenger's first name")
    last_name: str = Field(description="Passenger's last name")
    dob: str = Field(description="Date of birth in YYYY-MM-DD format")


# One money movement on a reservation: positive is a charge, negative a refund.
class Payment(BaseModel):
    payment_id: str = Field(description="Unique identifier for the payment")
    amount: int = Field(description="Payment amount in dollars")


# -- users ----------------------------------------------------------------------------------------
class Name(BaseModel):
    first_name: str
    last_name: str


class Address(BaseModel):
    address1: str
    address2: str | None = None
    city: str
    country: str
    state: str
    zip: str


class CreditCard(BaseModel):
    """Charged without limit; refunds go back to it (off-line, nothing in the DB changes)."""

    source: Literal["credit_card"] = "credit_card"
    id: str
    brand: str
    last_four: str


class GiftCard(BaseModel):
    """Has a balance that payments decrement (and flight-change refunds increment)."""

    source: Literal["gift_card"] = "gift_card"
    id: str
    amount: float


class Certificate(BaseModel):
    """A travel certificate; it is consumed whole by the booking that uses it."""

    source: Literal["certificate"] = "certificate"
    id: str
    amount: float


PaymentMethod = Annotated[CreditCard | GiftCard | Certificate, Field(discriminator="source")]


class User(BaseModel):
    """A customer: contact data, payment methods by id, saved travellers and reservation ids."""

    user_id: str
    name: Name
    address: Address
    email: str
    dob: str
    payment_methods: dict[str, PaymentMethod]
    saved_passengers: list[Passenger]
    membership: Membership
    reservations: list[str]


# -- reservations ---------------------------------------------------------------------------------
class ReservationFlight(BaseModel):
    """One booked segment at the price paid per passenger."""

    flight_number: str
    origin: str
    destination: str
    date: str
    price: int


class Reservation(BaseModel):
    """A booking. ``status`` is ``None`` while active and ``"cancelled"`` afterwards."""

    reservation_id: str
    user_id: str
    origin: str
    destination: str
    flight_type: FlightType
    cabin: CabinClass
    flights: list[ReservationFlight]
    passengers: list[Passenger]
    payment_history: list[Payment]
    created_at: str
    total_baggages: int
    nonfree_baggages: int
    insurance: Insurance
    status: Literal["cancelled"] | None = None


class FlightDB(BaseModel):
    """The whole airline. Each field is a table keyed by id (copied row by row on write)."""

    flights: dict[str, Flight]
    users: dict[str, User]
    reservations: dict[str, Reservation]
