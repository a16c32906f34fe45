"""Static catalogues of the airline generator: airports, cities, names, card brands, cabin weights and prices.

Plain data, no logic: `eigendspy.domains.airline.generator` draws from these with its seeded RNG.
"""

from __future__ import annotations

from eigendspy.domains.airline.db import CabinClass

AIRPORT_COORDS: dict[str, tuple[float, float]] = {
    "SFO": (37.6, -122.4), "JFK": (40.6, -73.8), "LAX": (33.9, -118.4), "ORD": (42.0, -87.9),
    "DFW": (32.9, -97.0), "DEN": (39.9, -104.7), "SEA": (47.4, -122.3), "ATL": (33.6, -84.4),
    "MIA": (25.8, -80.3), "BOS": (42.4, -71.0), "PHX": (33.4, -112.0), "IAH": (30.0, -95.3),
    "LAS": (36.1, -115.2), "MCO": (28.4, -81.3), "EWR": (40.7, -74.2), "CLT": (35.2, -80.9),
    "MSP": (44.9, -93.2), "DTW": (42.2, -83.4), "PHL": (39.9, -75.2), "LGA": (40.8, -73.9),
}  # fmt: skip
"""The airports of ``list_all_airports`` with approximate coordinates (for flight durations)."""

CITIES = [
    ("San Francisco", "CA", "941"), ("New York", "NY", "100"), ("Los Angeles", "CA", "900"),
    ("Chicago", "IL", "606"), ("Dallas", "TX", "752"), ("Denver", "CO", "802"), ("Seattle", "WA", "981"),
    ("Atlanta", "GA", "303"), ("Miami", "FL", "331"), ("Boston", "MA", "021"), ("Phoenix", "AZ", "850"),
    ("Houston", "TX", "770"), ("Philadelphia", "PA", "191"), ("Charlotte", "NC", "282"),
]  # fmt: skip
FIRST_NAMES = (
    "Aarav Amara Ava Chen Daiki Emma Ethan Fatima Hana Harper Isabella Ivan James Juan Lei Liam Lucas Mateo "
    "Mei Mia Noah Olivia Omar Raj Sofia Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Ahmed Brown Garcia Hassan Ito Johnson Khan Kim Lopez Martin Muller Nguyen Okafor Patel Petrov Rossi "
    "Sanchez Sato Silva Smith Wang Wilson"
).split()
STREETS = ["Main Street", "Oak Street", "Pine Street", "Maple Avenue", "Cedar Lane", "Elm Street", "Park Avenue"]
CARD_BRANDS = ["visa", "mastercard", "amex"]
MEMBERSHIP_WEIGHTS = {"regular": 5, "silver": 3, "gold": 2}
CABIN_WEIGHTS = {"basic_economy": 3, "economy": 5, "business": 2}
CABIN_PRICE_FACTOR: dict[CabinClass, tuple[float, float]] = {
    "basic_economy": (0.55, 0.8),
    "economy": (1.0, 1.3),
    "business": (2.4, 3.6),
}
LISTED_CABINS: tuple[CabinClass, ...] = ("basic_economy", "economy", "business")
"""The order tau2's data lists seats and prices in (tool outputs print them in dict order)."""
