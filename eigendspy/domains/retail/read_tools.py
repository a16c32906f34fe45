"""Retail read tools and the lookups every retail tool shares.

Read tools receive a read-only view of the shared DB and return its rows as they are (the
environment serializes them), so they must never mutate what they return. The lookup helpers
raise `ToolError` with tau2-bench's exact messages ("Order not found", ...).
"""

from __future__ import annotations

from collections import Counter

from eigendspy.core.domain import ToolError, tool
from eigendspy.domains.retail.db import CreditCard, GiftCard, Order, Paypal, Product, RetailDB, User, Variant


# -- lookups (shared by read and write tools) -------------------------------------------------
def lookup_order(db: RetailDB, order_id: str) -> Order:
    if order_id not in db.orders:
        raise ToolError("Order not found")
    return db.orders[order_id]


def lookup_user(db: RetailDB, user_id: str) -> User:
    if user_id not in db.users:
        raise ToolError("User not found")
    return db.users[user_id]


def lookup_product(db: RetailDB, product_id: str) -> Product:
    if product_id not in db.products:
        raise ToolError("Product not found")
    return db.products[product_id]


def lookup_variant(db: RetailDB, product_id: str, item_id: str) -> Variant:
    variant = lookup_product(db, product_id).variants.get(item_id)
    if variant is None:
        raise ToolError("Variant not found")
    return variant


def lookup_payment_method(user: User, payment_method_id: str) -> CreditCard | Paypal | GiftCard:
    method = user.payment_methods.get(payment_method_id)
    if method is None:
        raise ToolError("Payment method not found")
    return method


def require_id_list(name: str, value: object) -> list[str]:
    """Refuse an id list that is not a JSON list of strings, before any work depends on its length.

    Why: tau2 would iterate a string character by character (and any other value in its own
    way); a model-written argument must cost at most linear work and never reach a DB row with
    the wrong type. No tau2 probe passes such a value, so refusing it keeps parity.
    """
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ToolError(f"{name} must be a list of item id strings")
    return value


def missing_items(order: Order, item_ids: list[str]) -> list[str]:
    """Requested item ids that occur in the order fewer times than requested (in request order).

    Counted once each (linear), not with ``list.count`` per element: the list is model-written.
    """
    requested = Counter(item_ids)
    in_order = Counter(item.item_id for item in order.items)
    return [item_id for item_id in item_ids if requested[item_id] > in_order[item_id]]


def credit_gift_card(method: object, amount: float) -> None:
    """Gift-card money moves at once; balances are kept rounded to cents, as tau2 does."""
    if isinstance(method, GiftCard):
        method.balance = round(method.balance + amount, 2)


@tool(kind="read")
def find_user_id_by_name_zip(db: RetailDB, first_name: str, last_name: str, zip: str) -> str:
    """Find user id by first name, last name, and zip code. If the user is not found, the function

    will return an error message. By default, find user id by email, and only call this function
    if the user is not found by email or cannot remember email.

    Args:
        first_name: The first name of the customer, such as 'John'.
        last_name: The last name of the customer, such as 'Doe'.
        zip: The zip code of the customer, such as '12345'.

    Returns:
        The user id if found, otherwise an error message.
    """
    first, last = first_name.lower(), last_name.lower()
    for user_id, user in db.users.items():  # one table view for the scan, not one per row
        if user.name.first_name.lower() == first and user.name.last_name.lower() == last:
            if user.address.zip == zip:
                return user_id
    raise ToolError("User not found")


@tool(kind="read")
def find_user_id_by_email(db: RetailDB, email: str) -> str:
    """Find user id by email. If the user is not found, the function will return an error message.

    Args:
        email: The email of the user, such as 'something@example.com'.

    Returns:
        The user id if found, otherwise an error message.
    """
    wanted = email.lower()
    for user_id, user in db.users.items():
        if user.email.lower() == wanted:
            return user_id
    raise ToolError("User not found")


@tool(kind="read")
def get_order_details(db: RetailDB, order_id: str) -> Order:
    """Get the status and details of an order.

    Args:
        order_id: The order id, such as '#W0000000'. Be careful there is a '#' symbol at the beginning of the order id.

    Returns:
        The order details.
    """  # noqa: E501
    return lookup_order(db, order_id)


@tool(kind="read")
def get_product_details(db: RetailDB, product_id: str) -> Product:
    """Get the inventory details of a product.

    Args:
        product_id: The product id, such as '6086499569'. Be careful the product id is different from the item id.

    Returns:
        The product details.
    """  # noqa: E501
    return lookup_product(db, product_id)


@tool(kind="read")
def get_item_details(db: RetailDB, item_id: str) -> Variant:
    """Get the inventory details of an item.

    Args:
        item_id: The item id, such as '6086499569'. Be careful the item id is different from the product id.

    Returns:
        The variant (item) details.
    """
    for product in db.products.values():  # one table view for the scan, not one per product
        variant = product.variants.get(item_id)
        if variant is not None:
            return variant
    raise ToolError("Item not found")


@tool(kind="read")
def get_user_details(db: RetailDB, user_id: str) -> User:
    """Get the details of a user, including their orders.

    Args:
        user_id: The user id, such as 'sara_doe_496'.

    Returns:
        The user details.
    """
    return lookup_user(db, user_id)


@tool(kind="read")
def list_all_product_types(db: RetailDB) -> dict[str, str]:
    """List the name and product id of all product types.

    Each product type has a variety of different items with unique item ids and options.
    There are only 50 product types in the store.

    Returns:
        A dictionary mapping product names to product ids, sorted by name.
    """
    names = {db.products[pid].name: pid for pid in db.products}
    return dict(sorted(names.items()))
