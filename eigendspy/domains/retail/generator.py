"""A seeded generator for retail databases in tau2's schema (no third-party data needed).

Why: tau2's retail DB is third-party data that we may not ship, yet synthesis, tests and the
demo need a realistic store. This builds one from a fixed catalog of product templates: every
id follows tau2's formats (``first_last_1234`` users, ``#W1234567`` orders, 10-digit product
and item ids, ``credit_card_1234567`` payment methods), every order is internally consistent
(items priced from the catalog, fulfillments only once shipped, a payment history that adds
up, the bookkeeping fields of cancelled/returned/exchanged orders filled in), and the same
seed always gives the same DB.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from eigendspy.domains.retail.db import (
    CreditCard,
    Fulfillment,
    GiftCard,
    Order,
    OrderItem,
    Payment,
    Paypal,
    Product,
    RetailDB,
    User,
    UserAddress,
    UserName,
    Variant,
)

CATALOG: list[tuple[str, float, dict[str, list[str]]]] = [
    (entry["name"], entry["price"], entry["options"])
    for entry in json.loads((Path(__file__).parent / "catalog.json").read_text())
]
"""Product templates: name, typical price, option name -> possible values (`catalog.json`)."""

FIRST_NAMES = (
    "Aarav Ava Chen Daiki Emma Ethan Fatima Harper Isabella James Lei Liam Lucas Mei Mia Noah Olivia Omar "
    "Raj Sofia Yara Yusuf"
).split()
LAST_NAMES = (
    "Ahmed Anderson Brown Garcia Gonzalez Ito Johnson Khan Kim Kovacs Lee Lopez Martin Moore Muller Nguyen "
    "Patel Rossi Santos Silva Wilson"
).split()
STREETS = (
    "Main Street, Oak Avenue, Elm Street, Broadway, Cedar Street, Maple Drive, Pine Lane, Hillcrest Drive, "
    "Lakeview Drive, River Road, Park Avenue, Sunset Drive, Chestnut Street"
).split(", ")
CITIES: list[tuple[str, str, str]] = [
    (city, state, zip_prefix)
    for city, state, zip_prefix in (
        entry.split("/")
        for entry in (
            "New York/NY/100; Los Angeles/CA/900; Chicago/IL/606; Houston/TX/770; Phoenix/AZ/850; "
            "Philadelphia/PA/191; San Antonio/TX/782; San Diego/CA/921; Dallas/TX/752; San Jose/CA/951; "
            "Austin/TX/787; Columbus/OH/432; Charlotte/NC/282; Seattle/WA/981; Denver/CO/802; Boston/MA/021"
        ).split("; ")
    )
]
CARD_BRANDS = ["visa", "mastercard", "amex", "discover"]
STATUS_WEIGHTS = {
    "pending": 35,
    "processed": 12,
    "delivered": 30,
    "cancelled": 10,
    "return requested": 5,
    "exchange requested": 4,
    "pending (item modified)": 4,
}
SHIPPED = {"processed", "delivered", "return requested", "exchange requested"}


class _Ids:
    """Draws unique ids of a given shape from one RNG (ids never collide across kinds)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def digits(self, n: int, prefix: str = "") -> str:
        while True:
            candidate = prefix + str(self.rng.randrange(10 ** (n - 1), 10**n))
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate


def _products(rng: random.Random, ids: _Ids, num_products: int) -> dict[str, Product]:
    if not 1 <= num_products <= len(CATALOG):
        raise ValueError(f"num_products must be between 1 and {len(CATALOG)}, got {num_products}")
    products: dict[str, Product] = {}
    for name, base_price, dims in rng.sample(CATALOG, num_products):
        combos = list(itertools.product(*dims.values()))
        variants: dict[str, Variant] = {}
        for combo in rng.sample(combos, min(len(combos), rng.randint(4, 10))):
            item_id = ids.digits(10)
            variants[item_id] = Variant(
                item_id=item_id,
                options=dict(zip(dims, combo, strict=True)),
                available=rng.random() < 0.8,
                price=round(base_price * rng.uniform(0.85, 1.15), 2),
            )
        product_id = ids.digits(10)
        products[product_id] = Product(name=name, product_id=product_id, variants=variants)
    return products


def _address(rng: random.Random) -> UserAddress:
    city, state, zip_prefix = rng.choice(CITIES)
    return UserAddress(
        address1=f"{rng.randint(100, 999)} {rng.choice(STREETS)}",
        address2=rng.choice([f"Suite {rng.randint(100, 999)}", f"Apt {rng.randint(1, 99)}", ""]),
        city=city,
        country="USA",
        state=state,
        zip=zip_prefix + f"{rng.randint(0, 99):02d}",
    )


def _users(rng: random.Random, ids: _Ids, num_users: int) -> dict[str, User]:
    users: dict[str, User] = {}
    for _ in range(num_users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        user_id = ids.digits(4, f"{first.lower()}_{last.lower()}_")
        methods: dict[str, CreditCard | Paypal | GiftCard] = {}
        for source in rng.sample(["credit_card", "paypal", "gift_card"], rng.randint(1, 3)):
            pm_id = ids.digits(7, f"{source}_")
            if source == "credit_card":
                methods[pm_id] = CreditCard(
                    id=pm_id, brand=rng.choice(CARD_BRANDS), last_four=f"{rng.randint(0, 9999):04d}"
                )
            elif source == "paypal":
                methods[pm_id] = Paypal(id=pm_id)
            else:
                methods[pm_id] = GiftCard(id=pm_id, balance=float(rng.randint(0, 300)))
        users[user_id] = User(
            user_id=user_id,
            name=UserName(first_name=first, last_name=last),
            address=_address(rng),
            email=ids.digits(4, f"{first.lower()}.{last.lower()}") + "@example.com",
            payment_methods=methods,
            orders=[],
        )
    return users


def _item(product: Product, variant: Variant) -> OrderItem:
    return OrderItem(
        name=product.name,
        product_id=product.product_id,
        item_id=variant.item_id,
        price=variant.price,
        options=dict(variant.options),
    )


def _order(rng: random.Random, ids: _Ids, user: User, products: list[Product]) -> Order:
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    items = []
    for product in rng.sample(products, min(len(products), rng.randint(1, 4))):
        items.append(_item(product, rng.choice(list(product.variants.values()))))
    if rng.random() < 0.1:  # a quantity of two is two identical entries, as in tau2's data
        items.append(items[-1].model_copy(deep=True))
    method_id = rng.choice(list(user.payment_methods))
    total = round(sum(i.price for i in items), 2)
    order = Order(
        order_id=ids.digits(7, "#W"),
        user_id=user.user_id,
        status=status,
        address=user.address.model_copy() if rng.random() < 0.9 else _address(rng),
        items=items,
        fulfillments=[],
        payment_history=[Payment(transaction_type="payment", amount=total, payment_method_id=method_id)],
    )
    if status in SHIPPED:
        order.fulfillments = [Fulfillment(tracking_id=[ids.digits(12)], item_ids=[i.item_id for i in items])]
    if status == "cancelled":
        order.cancel_reason = rng.choice(["no longer needed", "ordered by mistake"])
        order.payment_history.append(
            Payment(transaction_type="refund", amount=total, payment_method_id=method_id)
        )
    elif status == "return requested":
        returned = rng.sample(items, rng.randint(1, len(items)))
        order.return_items = sorted(i.item_id for i in returned)
        order.return_payment_method_id = method_id
    elif status in ("exchange requested", "pending (item modified)"):
        item = rng.choice(items)
        product = next(p for p in products if p.product_id == item.product_id)
        others = [v for v in product.variants.values() if v.item_id != item.item_id and v.available]
        if not others:  # nothing to swap with: leave it a plain order of the base status
            order.status = "delivered" if status == "exchange requested" else "pending"
            return order
        other = rng.choice(others)
        if status == "exchange requested":
            order.exchange_items, order.exchange_new_items = [item.item_id], [other.item_id]
            order.exchange_payment_method_id = method_id
            order.exchange_price_difference = round(other.price - item.price, 2)
        else:  # the order was placed with `other` and later modified to `item`
            diff = item.price - other.price
            order.payment_history[0].amount = round(total - diff, 2)
            order.payment_history.append(
                Payment(
                    transaction_type="payment" if diff > 0 else "refund",
                    amount=round(abs(diff), 2),
                    payment_method_id=method_id,
                )
            )
    return order


def generate_db(seed: int = 0, num_users: int = 40, num_products: int = 20, num_orders: int = 80) -> RetailDB:
    """Build a consistent retail DB; the same arguments always give the same DB.

    Args:
        seed: Seeds every random choice.
        num_users: Customers to create (each gets one to three payment methods).
        num_products: Product types, drawn from `CATALOG` (at most its length).
        num_orders: Orders, spread over random customers and over every order status.
    """
    if num_users < 1 or num_orders < 0:
        raise ValueError(f"need num_users >= 1 and num_orders >= 0, got {num_users} and {num_orders}")
    rng = random.Random(seed)
    ids = _Ids(rng)
    products = _products(rng, ids, num_products)
    users = _users(rng, ids, num_users)
    orders: dict[str, Order] = {}
    user_list, product_list = list(users.values()), list(products.values())
    for _ in range(num_orders):
        user = rng.choice(user_list)
        order = _order(rng, ids, user, product_list)
        orders[order.order_id] = order
        user.orders.append(order.order_id)
    return RetailDB(products=products, users=users, orders=orders)
