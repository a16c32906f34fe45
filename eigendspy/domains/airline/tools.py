"""Airline domain tools, tool-for-tool compatible with tau2-bench's airline domain.

Names, argument names, descriptions and kinds equal tau2's (the tests compare the schemas with
tau2's), and so do outputs, error texts and state changes, quirks included (listed in this
folder's README). Read tools live in `read_tools`, write tools in `write_tools`; this module adds
the two generic tools and lists all fourteen in tau2's order.
"""

from __future__ import annotations

from eigendspy.domains.airline.read_tools import (
    get_flight_status,
    get_reservation_details,
    get_user_details,
    list_all_airports,
    search_direct_flight,
    search_onestop_flight,
)
from eigendspy.domains.airline.write_tools import (
    book_reservation,
    cancel_reservation,
    send_certificate,
    update_reservation_baggages,
    update_reservation_flights,
    update_reservation_passengers,
)
from eigendspy.domains.common import calculate, transfer_to_human_agents

AGENT_TOOLS = [
    book_reservation,
    calculate,
    cancel_reservation,
    get_reservation_details,
    get_user_details,
    list_all_airports,
    search_direct_flight,
    search_onestop_flight,
    send_certificate,
    transfer_to_human_agents,
    update_reservation_baggages,
    update_reservation_flights,
    update_reservation_passengers,
    get_flight_status,
]
"""In tau2's order (the order the tools are handed to the model)."""
