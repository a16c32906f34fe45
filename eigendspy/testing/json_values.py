"""Which values are already JSON-native, so the scripted LM can write them without a pydantic round trip.

Why: rendering a scripted answer ran DSPy's ``serialize_for_json`` on every output value, which builds a
pydantic ``TypeAdapter`` per value per call — most of a scripted call's cost, and nothing a model server's
client pays. For JSON-native data that round trip returns the value unchanged, so it can be skipped.
"""

from __future__ import annotations

import math
from typing import Any


def is_plain_json(value: Any) -> bool:
    """Whether ``serialize_for_json(value)`` returns ``value`` as is: exact ``str``, ``int``, ``bool``, ``None``,
    finite ``float``, and lists and str-keyed dicts of those (tuples, other keys, NaN/inf, subclasses: no)."""
    kind = type(value)
    if kind is list:
        return all(is_plain_json(v) for v in value)
    if kind is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    if kind is float:
        return math.isfinite(value)
    return kind is str or kind is int or kind is bool or value is None
