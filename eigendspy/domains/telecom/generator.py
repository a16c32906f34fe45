"""A seeded generator of telecom CRMs and phones in tau2's schema (no third-party data needed).

Why: tau2's telecom DB is third-party data that we may not ship, yet synthesis, tests and the
demo need a carrier with realistic accounts. This builds one: a fixed plan catalog, customers
with 1-3 lines each (some suspended, some over their data allowance, some with roaming), a
device per line, and a bill history per customer (January paid, February issued/paid/overdue,
often a March draft collecting one-off charges). Ids follow tau2's formats (``C1001``,
``L1001``, ``D1001``, ``B1001``, ``P1001``), numbers add up (a bill's total is the sum of its
line items), every reference resolves (`check_consistency`), and the same seed always gives
the same DB, hence the same hash.

The phone (`generate_user_db`) starts healthy and registered as a network search would leave
it; task initialization actions break it (airplane mode, SIM out, broken APN, ...) and name the
user's line with ``set_user_info``.
"""

from __future__ import annotations

import datetime as dt
import random

from eigendspy.domains.telecom import device as phone
from eigendspy.domains.telecom.db import (
    NEXT_PERIOD,
    TODAY,
    AccountStatus,
    Address,
    Bill,
    BillStatus,
    Customer,
    Device,
    DeviceType,
    Line,
    LineItem,
    LineItemType,
    LineStatus,
    PaymentMethod,
    PaymentMethodType,
    Plan,
    TelecomDB,
)
from eigendspy.domains.telecom.user_db import AppPermissions, AppStatus, PhoneDevice, Surroundings, TelecomUserDB

PLANS = (
    Plan(plan_id="P1001", name="Lite 4", data_limit_gb=4.0, price_per_month=35.0, data_refueling_price_per_gb=6.0),
    Plan(
        plan_id="P1002", name="Everyday 12", data_limit_gb=12.0, price_per_month=55.0, data_refueling_price_per_gb=3.0
    ),
    Plan(plan_id="P1003", name="Power 30", data_limit_gb=30.0, price_per_month=75.0, data_refueling_price_per_gb=1.5),
    Plan(plan_id="P1004", name="Endless", data_limit_gb=999.0, price_per_month=90.0, data_refueling_price_per_gb=0.1),
    Plan(
        plan_id="P1005", name="Tablet Data 8", data_limit_gb=8.0, price_per_month=25.0, data_refueling_price_per_gb=4.0
    ),
)
"""Our own plan catalog (tau2's data is not shipped)."""

FIRST_NAMES = "Amara Bruno Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Keira Luca Maya Nadia Oscar Priya".split()
LAST_NAMES = "Adeyemi Berg Castillo Dubois Eriksen Fischer Gupta Horvat Ivanova Jensen Kowalski Lindqvist".split()
CITIES = (
    ("Portland", "OR", "972"),
    ("Madison", "WI", "537"),
    ("Tucson", "AZ", "857"),
    ("Raleigh", "NC", "276"),
    ("Boise", "ID", "837"),
    ("Omaha", "NE", "681"),
    ("Albany", "NY", "122"),
    ("Savannah", "GA", "314"),
)
STREETS = "Birch Lane|Harbor Road|Mill Street|Orchard Way|Quarry Road|Summit Avenue|Willow Court".split("|")
PHONE_MODELS = (
    (DeviceType.PHONE, "Nova 12", True),
    (DeviceType.PHONE, "Pixelite 8", True),
    (DeviceType.PHONE, "Orbit S", True),
    (DeviceType.PHONE, "Basic Flip 3", False),
    (DeviceType.TABLET, "Slate 10", True),
    (DeviceType.TABLET, "Slate Mini", False),
)
SUSPENSION_FEE = 5.0


def _date_between(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def _plan(plan_id: str) -> Plan:
    return next(p for p in PLANS if p.plan_id == plan_id)


def _line_items(lines: list[Line], issued: dt.date, rng: random.Random) -> list[LineItem]:
    """A month's plan charges per line, a holding fee per suspended line, sometimes an overage."""
    items = []
    for line in lines:
        plan = _plan(line.plan_id)
        items.append(
            LineItem(
                description=f"{plan.name} - Line {line.phone_number}",
                amount=plan.price_per_month,
                date=issued,
                item_type=LineItemType.PLAN_CHARGE,
            )
        )
        if line.status == LineStatus.SUSPENDED:
            items.append(
                LineItem(
                    description=f"Suspension Fee - Line {line.phone_number}",
                    amount=SUSPENSION_FEE,
                    date=issued,
                    item_type=LineItemType.FEE,
                )
            )
        elif rng.random() < 0.15:
            items.append(
                LineItem(
                    description=f"Data Overage - Line {line.phone_number}",
                    amount=round(rng.uniform(5, 25), 1),
                    date=issued,
                    item_type=LineItemType.OVERAGE,
                )
            )
    return items


def _bill(bill_id: str, customer_id: str, month: int, items: list[LineItem], status: BillStatus) -> Bill:
    start = dt.date(2025, month, 1)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    issued = start + dt.timedelta(days=4)
    return Bill(
        bill_id=bill_id,
        customer_id=customer_id,
        period_start=start,
        period_end=end,
        issue_date=issued,
        total_due=round(sum(i.amount for i in items), 2),
        due_date=issued + dt.timedelta(days=14),
        line_items=items,
        status=status,
    )


def generate_db(seed: int = 0, num_customers: int = 8) -> TelecomDB:
    """A seeded CRM: ``num_customers`` customers, their lines, devices and bills, and `PLANS`."""
    rng = random.Random(seed)
    customers: list[Customer] = []
    lines: list[Line] = []
    devices: list[Device] = []
    bills: list[Bill] = []
    used_numbers: set[str] = set()

    def new_number(prefix: str) -> str:
        while True:
            number = f"555-{prefix}-{rng.randrange(1000, 10000)}"
            if number not in used_numbers:
                used_numbers.add(number)
                return number

    for c in range(num_customers):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, state, zip_prefix = rng.choice(CITIES)
        customer_id = f"C{1001 + c}"
        own_lines: list[Line] = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            kind, model, esim = rng.choice(PHONE_MODELS)
            device = Device(
                device_id=f"D{1001 + len(devices)}",
                device_type=kind,
                model=model,
                imei="".join(str(rng.randrange(10)) for _ in range(15)),
                is_esim_capable=esim,
                activated=True,
                activation_date=dt.datetime(
                    2024, rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(8, 20), rng.choice((0, 15, 30, 45))
                ),
            )
            devices.append(device)
            plan = _plan("P1005") if kind == DeviceType.TABLET else rng.choice(PLANS[:4])
            suspended = rng.random() < 0.2
            used = round(rng.uniform(0.1, 1.25) * min(plan.data_limit_gb, 40.0), 1)
            line = Line(
                line_id=f"L{1001 + len(lines)}",
                phone_number=new_number("2" + str(rng.randrange(10, 100))),
                status=LineStatus.SUSPENDED if suspended else LineStatus.ACTIVE,
                plan_id=plan.plan_id,
                device_id=device.device_id,
                data_used_gb=0.0 if suspended else used,
                roaming_enabled=rng.random() < 0.4,
                contract_end_date=_date_between(rng, dt.date(2025, 6, 30), dt.date(2027, 12, 31)),
                last_plan_change_date=_date_between(rng, dt.date(2024, 1, 1), dt.date(2025, 1, 31)),
                suspension_start_date=_date_between(rng, dt.date(2025, 1, 5), dt.date(2025, 2, 20))
                if suspended
                else None,
            )
            lines.append(line)
            own_lines.append(line)
        bill_ids = []
        for month, status in (
            (1, BillStatus.PAID),
            (2, rng.choice((BillStatus.ISSUED, BillStatus.PAID, BillStatus.OVERDUE))),
        ):
            bill = _bill(
                f"B{1001 + len(bills)}",
                customer_id,
                month,
                _line_items(own_lines, dt.date(2025, month, 5), rng),
                status,
            )
            bills.append(bill)
            bill_ids.append(bill.bill_id)
        if rng.random() < 0.5:
            start, end, issued, due = NEXT_PERIOD
            draft = Bill(
                bill_id=f"B{1001 + len(bills)}",
                customer_id=customer_id,
                period_start=start,
                period_end=end,
                issue_date=issued,
                total_due=0.0,
                due_date=due,
                status=BillStatus.DRAFT,
            )
            bills.append(draft)
            bill_ids.append(draft.bill_id)
        methods = [
            PaymentMethod(
                method_type=rng.choice(list(PaymentMethodType)),
                account_number_last_4=f"{rng.randrange(10000):04d}",
                expiration_date=f"{rng.randrange(1, 13):02d}/{rng.randrange(2025, 2030)}",
            )
            for _ in range(rng.choice((1, 1, 2)))
        ]
        customers.append(
            Customer(
                customer_id=customer_id,
                full_name=f"{first} {last}",
                date_of_birth=_date_between(rng, dt.date(1950, 1, 1), dt.date(2004, 12, 31)),
                email=f"{first.lower()}.{last.lower()}{rng.randrange(10, 100)}@example.com",
                phone_number=rng.choice(own_lines).phone_number
                if rng.random() < 0.6
                else new_number("1" + str(c % 10) + "0"),
                address=Address(
                    street=f"{rng.randrange(10, 999)} {rng.choice(STREETS)}",
                    city=city,
                    state=state,
                    zip_code=f"{zip_prefix}{rng.randrange(10, 100)}",
                ),
                account_status=AccountStatus.ACTIVE
                if any(x.status == LineStatus.ACTIVE for x in own_lines)
                else AccountStatus.SUSPENDED,
                payment_methods=methods,
                line_ids=[x.line_id for x in own_lines],
                bill_ids=bill_ids,
                created_at=dt.datetime.combine(
                    _date_between(rng, dt.date(2023, 1, 1), TODAY), dt.time(rng.randrange(8, 18))
                ),
                goodwill_credit_used_this_year=rng.choice((0.0, 0.0, 25.0, 50.0)),
            )
        )
    db = TelecomDB(
        plans=[p.model_copy() for p in PLANS], customers=customers, lines=lines, bills=bills, devices=devices
    )
    check_consistency(db)
    return db


def generate_user_db(seed: int = 0) -> TelecomUserDB:
    """A healthy phone in a 5G area, registered as a network search leaves it; no line named yet."""
    rng = random.Random(seed)
    apps = {
        "messaging": AppStatus(app_name="messaging", permissions=AppPermissions(sms=True, storage=True, phone=True)),
        "browser": AppStatus(app_name="browser", permissions=AppPermissions(storage=True, network=True)),
    }
    if rng.random() < 0.5:
        apps["camera"] = AppStatus(app_name="camera", permissions=AppPermissions(storage=True))
    handset = PhoneDevice(battery_level=rng.randrange(25, 101), app_statuses=apps)
    surroundings = Surroundings()
    phone.search_network(handset, surroundings)
    return TelecomUserDB(device=handset, surroundings=surroundings)


def check_consistency(db: TelecomDB) -> None:
    """Raise ``ValueError`` naming the first broken reference or inconsistent amount."""
    plans = {p.plan_id for p in db.plans}
    devices = {d.device_id for d in db.devices}
    lines = {line.line_id: line for line in db.lines}
    bills = {b.bill_id: b for b in db.bills}
    if len(lines) != len(db.lines) or len(bills) != len(db.bills):
        raise ValueError("duplicate line or bill id")
    numbers = [line.phone_number for line in db.lines]
    if len(set(numbers)) != len(numbers):
        raise ValueError("two lines share a phone number")
    for line in db.lines:
        if line.plan_id not in plans or (line.device_id is not None and line.device_id not in devices):
            raise ValueError(f"line {line.line_id} names an unknown plan or device")
        if (line.status == LineStatus.SUSPENDED) != (line.suspension_start_date is not None):
            raise ValueError(f"line {line.line_id}: suspension date does not match its status")
    owners: dict[str, str] = {}
    for customer in db.customers:
        for line_id in customer.line_ids:
            if line_id not in lines or owners.setdefault(line_id, customer.customer_id) != customer.customer_id:
                raise ValueError(f"customer {customer.customer_id}: line {line_id} is unknown or owned twice")
        drafts = 0
        for bill_id in customer.bill_ids:
            bill = bills.get(bill_id)
            if bill is None or bill.customer_id != customer.customer_id:
                raise ValueError(f"customer {customer.customer_id}: bill {bill_id} is unknown or not theirs")
            if abs(bill.total_due - sum(i.amount for i in bill.line_items)) > 1e-6:
                raise ValueError(f"bill {bill_id}: total does not equal its line items")
            drafts += bill.status == BillStatus.DRAFT
        if drafts > 1:
            raise ValueError(f"customer {customer.customer_id} has more than one draft bill")
