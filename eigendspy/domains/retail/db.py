"""Retail domain data model: a product catalog, customers with payment methods, and their orders.

The models reproduce tau2-bench's retail schema field for field, because tau2's DB check hashes
``model_dump()``: every optional order field must be present with its default, floats must stay
floats, and the field order must match so tool outputs (``json.dumps`` without key sorting)
are byte-equal to tau2's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal[
    "processed",
    "pending",
    "pending (item modified)",
    "delivered",
    "cancelled",
    "exchange requested",
    "return requested",
]
"""Every status an order can be in; tools compare against these strings exactly."""

CancelReason = Literal["no longer needed", "ordered by mistake"]
"""The only two reasons ``cancel_pending_order`` accepts."""


class _Record(BaseModel):
    """Unknown fields are an error (as in tau2), so a mistyped data file fails loudly, not silently."""

    model_config = ConfigDict(extra="forbid")


class Variant(_Record):
    """One purchasable version of a product (an *item*), with its own id, options and price."""

    item_id: str = Field(description="Unique item id of this variant")
    options: dict[str, str] = Field(description="Option name to value, e.g. {'color': 'blue'}")
    available: bool = Field(description="Whether the variant can currently be bought")
    price: float = Field(description="Unit price in USD")


class Product(_Record):
    """A product type (e.g. 'T-Shirt') and its variants keyed by item id."""

    name: str = Field(description="Product type name")
    product_id: str = Field(description="Unique product id (differs from every item id)")
    variants: dict[str, Variant] = Field(description="Variants keyed by item id")


class UserName(_Record):
    first_name: str
    last_name: str


class UserAddress(_Record):
    """A postal address; used both as a customer's default address and an order's shipping address."""

    address1: str
    address2: str
    city: str
    country: str
    state: str
    zip: str


class CreditCard(_Record):
    source: Literal["credit_card"] = "credit_card"
    id: str
    brand: str
    last_four: str


class Paypal(_Record):
    source: Literal["paypal"] = "paypal"
    id: str


class GiftCard(_Record):
    """A store gift card; its balance moves immediately on payments and refunds."""

    source: Literal["gift_card"] = "gift_card"
    id: str
    balance: float


PaymentMethod = Annotated[CreditCard | Paypal | GiftCard, Field(discriminator="source")]


class User(_Record):
    user_id: str
    name: UserName
    address: UserAddress
    email: str
    payment_methods: dict[str, PaymentMethod]
    orders: list[str]


class OrderItem(_Record):
    """One unit of a variant inside an order (a quantity of two is two entries)."""

    name: str
    product_id: str
    item_id: str
    price: float
    options: dict[str, str]


class Fulfillment(_Record):
    tracking_id: list[str]
    item_ids: list[str]


class Payment(_Record):
    transaction_type: Literal["payment", "refund"]
    amount: float
    payment_method_id: str


class Order(_Record):
    """An order and the bookkeeping that cancellations, returns and exchanges add to it."""

    order_id: str
    user_id: str
    address: UserAddress
    items: list[OrderItem]
    status: OrderStatus
    fulfillments: list[Fulfillment]
    payment_history: list[Payment]
    cancel_reason: CancelReason | None = None
    exchange_items: list[str] | None = None
    exchange_new_items: list[str] | None = None
    exchange_payment_method_id: str | None = None
    exchange_price_difference: float | None = None
    return_items: list[str] | None = None
    return_payment_method_id: str | None = None


class RetailDB(_Record):
    """The whole store. Each field is a table keyed by id (copied row by row on write)."""

    products: dict[str, Product]
    users: dict[str, User]
    orders: dict[str, Order]
