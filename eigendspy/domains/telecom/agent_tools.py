"""Telecom agent tools: the carrier CRM as a support agent sees it.

Names, schemas (docstrings), kinds, outputs and error texts equal tau2-bench's telecom
toolkit, in tau2's order (``AGENT_TOOLS``). Notable behaviour kept on purpose (see README.md):
the world is frozen on 2025-02-25; ``get_details_by_id`` dispatches on the id's first letter;
``send_payment_request`` does not check that the bill is unpaid; ``refuel_data`` works on
suspended lines too, although its description says otherwise; a new draft bill gets the id
``"B" + uuid4().hex[:8]``, drawn from the environment's seeded `IdSource`.
"""

from __future__ import annotations

import math
from typing import Any

from eigendspy.core.domain import ToolError, tool
from eigendspy.core.ids import IdSource
from eigendspy.domains.common import transfer_to_human_agents
from eigendspy.domains.telecom.db import (
    CYCLE_END,
    NEXT_PERIOD,
    TODAY,
    Bill,
    BillStatus,
    Customer,
    Device,
    Line,
    LineItem,
    LineItemType,
    LineStatus,
    Plan,
    TelecomDB,
)


# -- lookups (shared with env functions and the sync hook) -----------------------------------
def _find(rows: list[Any], field: str, value: str, label: str) -> Any:
    """The row whose ``field`` equals ``value``, else tau2's "<Label> with ID <value> not found"."""
    for row in rows:
        if getattr(row, field) == value:
            return row
    raise ToolError(f"{label} with ID {value} not found")


def find_customer(db: TelecomDB, customer_id: str) -> Customer:
    return _find(db.customers, "customer_id", customer_id, "Customer")


def find_line(db: TelecomDB, line_id: str) -> Line:
    return _find(db.lines, "line_id", line_id, "Line")


def find_plan(db: TelecomDB, plan_id: str) -> Plan:
    return _find(db.plans, "plan_id", plan_id, "Plan")


def find_device(db: TelecomDB, device_id: str) -> Device:
    return _find(db.devices, "device_id", device_id, "Device")


def find_bill(db: TelecomDB, bill_id: str) -> Bill:
    return _find(db.bills, "bill_id", bill_id, "Bill")


def find_line_by_phone(db: TelecomDB, phone_number: str) -> Line | None:
    return next((line for line in db.lines if line.phone_number == phone_number), None)


def customer_line(db: TelecomDB, customer_id: str, line_id: str) -> Line:
    """The line, provided the customer exists and owns it (the check every line tool makes first)."""
    customer = find_customer(db, customer_id)
    if line_id not in customer.line_ids:
        raise ToolError(f"Line {line_id} not found for customer {customer_id}")
    return find_line(db, line_id)


def bills_awaiting_payment(db: TelecomDB, customer: Customer) -> list[Bill]:
    """The customer's bills in ``Awaiting Payment``, in the order of ``customer.bill_ids``."""
    return [b for b in (find_bill(db, i) for i in customer.bill_ids) if b.status == BillStatus.AWAITING_PAYMENT]


def charge_next_bill(db: TelecomDB, customer: Customer, amount: float, description: str, ids: IdSource) -> Bill:
    """Add a one-off charge (or credit) to the customer's draft bill, opening one if needed."""
    draft = next((b for b in (find_bill(db, i) for i in customer.bill_ids) if b.status == BillStatus.DRAFT), None)
    if draft is None:
        start, end, issued, due = NEXT_PERIOD
        draft = Bill(
            bill_id=f"B{ids.uuid4().hex[:8]}",
            customer_id=customer.customer_id,
            period_start=start,
            period_end=end,
            issue_date=issued,
            total_due=0.0,
            due_date=due,
            status=BillStatus.DRAFT,
        )
        db.bills.append(draft)
        customer.bill_ids.append(draft.bill_id)
    kind = LineItemType.CREDIT if amount < 0 else LineItemType.CHARGE
    draft.line_items.append(LineItem(description=description, amount=amount, date=TODAY, item_type=kind))
    draft.total_due += amount
    return draft


# -- tools -----------------------------------------------------------------------------------
@tool(kind="read")
def get_customer_by_phone(db: TelecomDB, phone_number: str) -> Customer:
    """Finds a customer by their primary contact or line phone number.

    Args:
        phone_number: The phone number to search for.
    """
    for customer in db.customers:
        if customer.phone_number == phone_number:
            return customer
        for line_id in customer.line_ids:
            line = next((x for x in db.lines if x.line_id == line_id), None)
            if line is not None and line.phone_number == phone_number:
                return customer
    raise ToolError(f"Customer with phone number {phone_number} not found")


@tool(kind="read")
def get_customer_by_id(db: TelecomDB, customer_id: str) -> Customer:
    """Retrieves a customer directly by their unique ID.

    Args:
        customer_id: The unique identifier of the customer.
    """
    return find_customer(db, customer_id)


@tool(kind="read")
def get_customer_by_name(db: TelecomDB, full_name: str, dob: str) -> list[Customer]:
    """Searches for customers by name and DOB. May return multiple matches if names are similar,

    DOB helps disambiguate.

    Args:
        full_name: The full name of the customer.
        dob: Date of birth for verification, in the format YYYY-MM-DD.
    """
    wanted = full_name.lower()
    return [c for c in db.customers if c.full_name.lower() == wanted and str(c.date_of_birth) == dob]


@tool(kind="read")
def get_details_by_id(db: TelecomDB, id: str) -> Any:
    """Retrieves the details for a given ID.

    The ID must be a valid ID for a Customer, Line, Device, Bill, or Plan.

    Args:
        id: The ID of the object to retrieve.
    """
    by_prefix = {"L": find_line, "D": find_device, "B": find_bill, "C": find_customer, "P": find_plan}
    for prefix, lookup in by_prefix.items():
        if id.startswith(prefix):
            return lookup(db, id)
    raise ToolError(f"Unknown ID format or type: {id}")


@tool(kind="write")
def suspend_line(db: TelecomDB, customer_id: str, line_id: str, reason: str) -> dict[str, Any]:
    """Suspends a specific line (max 6 months).

    Checks: Line status must be Active.
    Logic: Sets line status to Suspended, records suspension_start_date.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to suspend.
        reason: Reason for suspension.
    """
    line = customer_line(db, customer_id, line_id)
    if line.status != LineStatus.ACTIVE:
        raise ToolError("Line must be active to suspend")
    line.status = LineStatus.SUSPENDED
    line.suspension_start_date = TODAY
    return {"message": "Line suspended successfully. $5/month holding fee will apply.", "line": line}


@tool(kind="write")
def resume_line(db: TelecomDB, customer_id: str, line_id: str) -> dict[str, Any]:
    """Resumes a suspended line.

    Checks: Line status must be Suspended or Pending Activation.
    Logic: Sets line status to Active, clears suspension_start_date.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to resume.
    """
    line = customer_line(db, customer_id, line_id)
    if line.status not in (LineStatus.SUSPENDED, LineStatus.PENDING_ACTIVATION):
        raise ToolError("Line must be suspended to resume")
    line.status = LineStatus.ACTIVE
    line.suspension_start_date = None
    return {"message": "Line resumed successfully", "line": line}


@tool(kind="read")
def get_bills_for_customer(db: TelecomDB, customer_id: str, limit: int = 12) -> list[Bill]:
    """Retrieves a list of the customer's bills, most recent first.

    Args:
        customer_id: ID of the customer.
        limit: Maximum number of bills to return.
    """
    customer = find_customer(db, customer_id)
    bills = sorted((find_bill(db, i) for i in customer.bill_ids), key=lambda b: b.issue_date, reverse=True)
    return bills[:limit]


@tool(kind="write")
def send_payment_request(db: TelecomDB, customer_id: str, bill_id: str) -> str:
    """Sends a payment request to the customer for a specific bill.

    Checks:
        - Customer exists
        - Bill exists and belongs to the customer
        - No other bills are already awaiting payment for this customer
    Logic: Sets bill status to AWAITING_PAYMENT and notifies customer.
    Warning: This method does not check if the bill is already PAID.
    Always check the bill status before calling this method.

    Args:
        customer_id: ID of the customer who owns the bill.
        bill_id: ID of the bill to send payment request for.
    """
    customer = find_customer(db, customer_id)
    if bills_awaiting_payment(db, customer):
        raise ToolError("A bill is already awaiting payment for this customer")
    if bill_id not in customer.bill_ids:
        raise ToolError(f"Bill {bill_id} not found for customer {customer_id}")
    bill = find_bill(db, bill_id)
    bill.status = BillStatus.AWAITING_PAYMENT
    return f"Payment request sent to the customer for bill {bill.bill_id}"


@tool(kind="read")
def get_data_usage(db: TelecomDB, customer_id: str, line_id: str) -> dict[str, Any]:
    """Retrieves current billing cycle data usage for a line, including data

    refueling amount, data limit, and cycle end date.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to check usage for.
    """
    line = customer_line(db, customer_id, line_id)
    plan = find_plan(db, line.plan_id)
    return {
        "line_id": line_id,
        "data_used_gb": line.data_used_gb,
        "data_limit_gb": plan.data_limit_gb,
        "data_refueling_gb": line.data_refueling_gb,
        "cycle_end_date": CYCLE_END,
    }


@tool(kind="write")
def enable_roaming(db: TelecomDB, customer_id: str, line_id: str) -> str:
    """Enables international roaming on a line.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to enable roaming for.
    """
    line = customer_line(db, customer_id, line_id)
    if line.roaming_enabled:
        return "Roaming was already enabled"
    line.roaming_enabled = True
    return "Roaming enabled successfully"


@tool(kind="write")
def disable_roaming(db: TelecomDB, customer_id: str, line_id: str) -> str:
    """Disables international roaming on a line.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to disable roaming for.
    """
    line = customer_line(db, customer_id, line_id)
    if not line.roaming_enabled:
        return "Roaming was already disabled"
    line.roaming_enabled = False
    return "Roaming disabled successfully"


@tool(kind="write")
def refuel_data(db: TelecomDB, customer_id: str, line_id: str, gb_amount: float, ids: IdSource) -> dict[str, Any]:
    """Refuels data for a specific line, adding to the customer's bill.

    Checks: Line status must be Active, Customer owns the line.
    Logic: Adds data to the line and charges customer based on the plan's refueling rate.

    Args:
        customer_id: ID of the customer who owns the line.
        line_id: ID of the line to refuel data for.
        gb_amount: Amount of data to add in gigabytes.
    """
    line = customer_line(db, customer_id, line_id)
    if gb_amount <= 0:
        raise ToolError("Refuel amount must be positive")
    plan = find_plan(db, line.plan_id)
    rate = plan.data_refueling_price_per_gb
    charge = gb_amount * rate
    line.data_refueling_gb += gb_amount
    customer = find_customer(db, customer_id)
    bill = charge_next_bill(db, customer, charge, f"Data refueling: {gb_amount} GB at ${rate}/GB", ids)
    if not (math.isfinite(line.data_refueling_gb) and math.isfinite(bill.total_due)):
        # Unlike tau2, which stores the overflow: inf dumps as ``null`` and the row no longer
        # loads. Raising discards every write of this call.
        raise ToolError("Refuel amount is too large")
    return {
        "message": f"Successfully added {gb_amount} GB of data for line {line_id} for ${charge:.2f}",
        "new_data_refueling_gb": line.data_refueling_gb,
        "charge": charge,
    }


AGENT_TOOLS = [
    get_customer_by_phone,
    get_customer_by_id,
    get_customer_by_name,
    get_details_by_id,
    suspend_line,
    resume_line,
    get_bills_for_customer,
    send_payment_request,
    get_data_usage,
    enable_roaming,
    disable_roaming,
    transfer_to_human_agents,
    refuel_data,
]
"""All agent tools, in tau2's order."""
