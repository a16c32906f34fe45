"""Retail domain tools, tool-for-tool compatible with tau2-bench's retail domain.

Names, argument names, descriptions and kinds equal tau2's (the schemas are compared with
tau2's in the tests), and so do outputs, error texts and state changes, including tau2's
quirks (listed in this folder's README): a model trained or evaluated here must see exactly
what it would see in tau2. Read tools live in `read_tools`, write tools in `write_tools`;
this module adds the two generic tools and lists all sixteen in tau2's order.
"""

from __future__ import annotations

from eigendspy.domains.common import calculate, transfer_to_human_agents
from eigendspy.domains.retail.read_tools import (
    find_user_id_by_email,
    find_user_id_by_name_zip,
    get_item_details,
    get_order_details,
    get_product_details,
    get_user_details,
    list_all_product_types,
)
from eigendspy.domains.retail.write_tools import (
    cancel_pending_order,
    exchange_delivered_order_items,
    modify_pending_order_address,
    modify_pending_order_items,
    modify_pending_order_payment,
    modify_user_address,
    return_delivered_order_items,
)

AGENT_TOOLS = [
    calculate,
    cancel_pending_order,
    exchange_delivered_order_items,
    find_user_id_by_name_zip,
    find_user_id_by_email,
    get_order_details,
    get_product_details,
    get_item_details,
    get_user_details,
    list_all_product_types,
    modify_pending_order_address,
    modify_pending_order_items,
    modify_pending_order_payment,
    modify_user_address,
    return_delivered_order_items,
    transfer_to_human_agents,
]
"""In tau2's order (the order the tools are handed to the model)."""
