"""Telecom agent-side data model: the carrier's CRM (plans, devices, lines, customers, bills).

The models follow tau2-bench's telecom schema field for field, because tau2's DB check hashes
the python-mode ``model_dump()``: every optional field must be present (``None`` by default),
floats must stay floats, timestamps must be ``datetime`` (``str()`` gives ``2025-01-15 10:30:00``)
and calendar days ``date`` (``2025-02-25``). Field order matters too: tool outputs are
``json.dumps`` without key sorting, so they are byte-equal to tau2's only in this order.

Top-level tables are lists (as in tau2's TOML file), which the copy-on-write state treats as
units: a write tool copies the list it touches. The CRM is small, so that costs microseconds.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

TODAY = dt.date(2025, 2, 25)
"""tau2's telecom world is frozen on this day (suspension dates, line-item dates)."""
CYCLE_END = dt.date(2025, 2, 28)
"""End of the current billing cycle, reported by ``get_data_usage``."""
NEXT_PERIOD = (dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.date(2025, 3, 1), dt.date(2025, 3, 15))
"""(period start, period end, issue date, due date) of a draft bill created by ``refuel_data``."""


class _Record(BaseModel):
    """Unknown fields are an error, so a mistyped data file fails loudly instead of hashing wrong."""

    model_config = ConfigDict(extra="forbid")


class LineStatus(str, Enum):
    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    PENDING_ACTIVATION = "Pending Activation"
    CLOSED = "Closed"


class BillStatus(str, Enum):
    DRAFT = "Draft"
    ISSUED = "Issued"
    AWAITING_PAYMENT = "Awaiting Payment"
    PAID = "Paid"
    OVERDUE = "Overdue"
    DISPUTED = "Disputed"


class AccountStatus(str, Enum):
    ACTIVE = "Active"
    SUSPENDED = "Suspended"
    PENDING_VERIFICATION = "Pending Verification"
    CLOSED = "Closed"


class PaymentMethodType(str, Enum):
    CREDIT_CARD = "Credit Card"
    DEBIT_CARD = "Debit Card"
    PAYPAL = "PayPal"
    BANK_TRANSFER = "Bank Transfer"


class DeviceType(str, Enum):
    PHONE = "phone"
    TABLET = "tablet"
    ROUTER = "router"
    WATCH = "watch"
    OTHER = "other"


class LineItemType(str, Enum):
    PLAN_CHARGE = "Plan Charge"
    OVERAGE = "Overage"
    FEE = "Fee"
    CREDIT = "Credit"
    CHARGE = "Charge"
    PAYMENT = "Payment"


class Plan(_Record):
    """A rate plan: monthly price, data allowance and the price of extra data."""

    plan_id: str
    name: str
    data_limit_gb: float
    price_per_month: float
    data_refueling_price_per_gb: float


class Device(_Record):
    """A handset or tablet known to the carrier (by IMEI)."""

    device_id: str
    device_type: DeviceType
    model: str
    imei: str | None = None
    is_esim_capable: bool
    activated: bool
    activation_date: dt.datetime | None = None
    last_esim_transfer_date: dt.datetime | None = None


class Line(_Record):
    """A phone number on a plan, with this cycle's data usage and roaming switch."""

    line_id: str
    phone_number: str
    status: LineStatus
    plan_id: str
    device_id: str | None = None
    data_used_gb: float = 0.0
    data_refueling_gb: float = 0.0
    roaming_enabled: bool = False
    contract_end_date: dt.date | None = None
    last_plan_change_date: dt.date | None = None
    last_sim_replacement_date: dt.date | None = None
    suspension_start_date: dt.date | None = None


class Address(_Record):
    street: str
    city: str
    state: str
    zip_code: str


class PaymentMethod(_Record):
    method_type: PaymentMethodType
    account_number_last_4: str
    expiration_date: str | None = None


class Customer(_Record):
    """An account holder: identity, payment methods, and the ids of their lines and bills."""

    customer_id: str
    full_name: str
    date_of_birth: dt.date
    email: str
    phone_number: str
    address: Address
    account_status: AccountStatus
    payment_methods: list[PaymentMethod] = Field(default_factory=list)
    line_ids: list[str] = Field(default_factory=list)
    bill_ids: list[str] = Field(default_factory=list)
    created_at: dt.datetime
    last_extension_date: dt.date | None = None
    goodwill_credit_used_this_year: float = 0.0


class LineItem(_Record):
    description: str
    amount: float
    date: dt.date
    item_type: LineItemType


class Bill(_Record):
    """One billing period of a customer; ``Draft`` bills collect charges for the next period."""

    bill_id: str
    customer_id: str
    period_start: dt.date
    period_end: dt.date
    issue_date: dt.date
    total_due: float
    due_date: dt.date
    line_items: list[LineItem] = Field(default_factory=list)
    status: BillStatus


class TelecomDB(BaseModel):
    """The carrier's CRM, the agent side of the telecom domain."""

    plans: list[Plan] = Field(default_factory=list)
    customers: list[Customer] = Field(default_factory=list)
    lines: list[Line] = Field(default_factory=list)
    bills: list[Bill] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)
