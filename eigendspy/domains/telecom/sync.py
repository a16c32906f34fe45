"""The telecom sync hook: mirror the carrier's view of the user's line onto the user's side.

tau2's orchestrator runs this after every successful tool call and at the end of every step
(and the environment after construction and each init action). It does nothing until the
user DB names a phone number; then it copies, from the CRM line with that number:

- line status ``Active`` -> ``surroundings.line_active``;
- line ``roaming_enabled`` -> ``surroundings.roaming_allowed``;
- ``data_used_gb >= plan.data_limit_gb + data_refueling_gb`` -> ``surroundings.mobile_data_usage_exceeded``;

and it settles payments: a paid request marks its bill ``Paid`` and is cleared; with no request
pending, the customer's first bill (in ``bill_ids`` order) that awaits payment becomes the new
request. The phone itself is not re-evaluated (that needs a network search).

Everything is decided on read-only views first, so a sync that changes nothing copies nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eigendspy.domains.telecom.agent_tools import (
    bills_awaiting_payment,
    find_bill,
    find_line_by_phone,
    find_plan,
    get_customer_by_phone,
)
from eigendspy.domains.telecom.db import BillStatus, LineStatus
from eigendspy.domains.telecom.user_db import PaymentRequest

if TYPE_CHECKING:
    from eigendspy.core.environment import Environment


def sync_telecom(env: Environment) -> None:
    """Reconcile the user's surroundings with the CRM (see the module docstring)."""
    surroundings = env.view("user").surroundings
    phone_number = surroundings.phone_number
    if phone_number is None:
        return
    crm = env.view("assistant")
    line = find_line_by_phone(crm, phone_number)
    if line is None:
        raise ValueError(f"telecom sync: no line has the user's phone number {phone_number!r}")
    plan = find_plan(crm, line.plan_id)
    mirrored = {
        "line_active": line.status == LineStatus.ACTIVE,
        "roaming_allowed": line.roaming_enabled,
        "mobile_data_usage_exceeded": line.data_used_gb >= plan.data_limit_gb + line.data_refueling_gb,
    }
    request = surroundings.payment_request
    paid_bill = request.bill_id if request is not None and request.paid else None
    if paid_bill is not None:
        with env.edit("assistant") as crm_edit:
            find_bill(crm_edit, paid_bill).status = BillStatus.PAID
        request = None
    if request is None:
        customer = get_customer_by_phone.fn(env.view("assistant"), phone_number)
        awaiting = bills_awaiting_payment(env.view("assistant"), customer)
        if awaiting:
            request = PaymentRequest(bill_id=awaiting[0].bill_id, amount_due=awaiting[0].total_due)
    changed = {k: v for k, v in mirrored.items() if getattr(surroundings, k) != v}
    if request is not surroundings.payment_request:
        changed["payment_request"] = request
    if changed:
        with env.edit("user") as user_edit:
            for key, value in changed.items():
                setattr(user_edit.surroundings, key, value)
