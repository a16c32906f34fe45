"""Telecom agent-side env functions: CRM changes for task setup, and CRM assertions.

Tasks name these in ``initialization_actions`` / ``env_assertions`` with ``env_type:
assistant``; agent *tools* (``enable_roaming``, ``disable_roaming``...) may be named there too,
and the environment runs them the same way.
"""

from __future__ import annotations

import datetime as dt

from eigendspy.core.domain import assertion, env_function
from eigendspy.domains.telecom.agent_tools import customer_line, find_bill, find_customer, find_line, find_plan
from eigendspy.domains.telecom.db import TODAY, Bill, BillStatus, LineItem, LineItemType, LineStatus, TelecomDB


def last_month(today: dt.date = TODAY) -> tuple[dt.date, dt.date]:
    """(first day, last day) of the month before ``today``."""
    end = today.replace(day=1) - dt.timedelta(days=1)
    return end.replace(day=1), end


@env_function
def set_data_usage(db: TelecomDB, customer_id: str, line_id: str, data_used_gb: float) -> str:
    """Set how much data a line has used this cycle (e.g. past its allowance)."""
    customer_line(db, customer_id, line_id).data_used_gb = data_used_gb
    return f"Data usage set to {data_used_gb} GB for line {line_id}"


@env_function
def suspend_line_for_overdue_bill(
    db: TelecomDB, customer_id: str, line_id: str, new_bill_id: str, contract_ended: bool
) -> str:
    """Issue an unpaid bill for last month's plan price and suspend the line over it.

    With ``contract_ended`` the line's contract also ends last month, so paying does not make
    the line resumable under the policy (the agent must transfer instead).
    """
    line = find_line(db, line_id)
    if line.status != LineStatus.ACTIVE:
        raise ValueError("Line must be active to suspend for unpaid bill")
    amount = find_plan(db, line.plan_id).price_per_month
    if amount <= 0:
        raise ValueError("Amount must be positive for overdue bill")
    customer = find_customer(db, customer_id)
    if any(find_bill(db, i).status == BillStatus.OVERDUE for i in customer.bill_ids):
        raise ValueError("Customer already has an overdue bill")
    start, end = last_month()
    item = LineItem(description=f"Charge for line {line_id}", amount=amount, date=TODAY, item_type=LineItemType.CHARGE)
    bill = Bill(
        bill_id=new_bill_id,
        customer_id=customer_id,
        period_start=start,
        period_end=end,
        issue_date=start,
        total_due=amount,
        due_date=start + dt.timedelta(days=14),
        line_items=[item],
        status=BillStatus.OVERDUE,
    )
    db.bills.append(bill)
    customer.bill_ids.append(new_bill_id)
    line.status = LineStatus.SUSPENDED
    line.suspension_start_date = TODAY
    if contract_ended:
        line.contract_end_date = end
    return f"Line {line_id} suspended for unpaid bill {new_bill_id}. Contract ended: {contract_ended}"


@assertion
def assert_data_refueling_amount(db: TelecomDB, customer_id: str, line_id: str, expected_amount: float) -> bool:
    return abs(customer_line(db, customer_id, line_id).data_refueling_gb - expected_amount) < 1e-6


@assertion
def assert_line_status(db: TelecomDB, customer_id: str, line_id: str, expected_status: str) -> bool:
    return customer_line(db, customer_id, line_id).status == LineStatus(expected_status)


@assertion
def assert_overdue_bill_exists(db: TelecomDB, customer_id: str, overdue_bill_id: str) -> bool:
    """True if the customer holds that bill in status Overdue; raises otherwise (as tau2 does)."""
    customer = find_customer(db, customer_id)
    if overdue_bill_id not in customer.bill_ids:
        raise ValueError(f"Overdue bill {overdue_bill_id} not found")
    if find_bill(db, overdue_bill_id).status != BillStatus.OVERDUE:
        raise ValueError(f"Overdue bill {overdue_bill_id} is not overdue")
    return True


@assertion
def assert_no_overdue_bill(db: TelecomDB, overdue_bill_id: str) -> bool:
    """True when the bill does not exist (nothing was overdue) or has been paid."""
    bill = next((b for b in db.bills if b.bill_id == overdue_bill_id), None)
    return bill is None or bill.status == BillStatus.PAID


AGENT_FUNCTIONS = [
    set_data_usage,
    suspend_line_for_overdue_bill,
    assert_data_refueling_amount,
    assert_line_status,
    assert_overdue_bill_exists,
    assert_no_overdue_bill,
]
