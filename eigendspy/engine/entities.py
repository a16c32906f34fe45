"""Real DB rows for the task generator: tasks must name entities that exist.

A generated task that invents an order id fails its own gold replay, so the generator is shown
a few real rows of the agent DB. Sampling is domain-agnostic: the tables of any DB model (its
``dict[str, Model]`` top-level fields, as `eigendspy.core.state` lays them out) are sampled together
*along references* — the anchor table is the one whose rows point at most other tables (retail:
orders -> users, products), and rows of the other tables that those rows name are preferred —
so the sample is a small, coherent slice (an order, its user, its products) instead of
unrelated rows. DBs without tables (list-typed fields only) are sampled from their lists.

The rendering is compact JSON within a character budget: the embedded default model has about
2k tokens of prompt for the whole synthesis call. A domain may override everything by defining
``sample_entities(domain, rng, k, max_chars) -> str`` in its module (built-in domains) or as an
attribute of the `Domain` object (any domain); no domain has to.
"""

from __future__ import annotations

import importlib
import json
import random
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

_LIST_ITEMS = 4  # list elements shown before a "…+N more" marker
_STR_CHARS = 60  # characters of a string value shown
_ANCHOR_PROBE = 5


def _leaves(value: Any) -> Iterator[str]:
    """Every string leaf and dict key of a JSON-like value (candidate references to other rows)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)


def _jsonable(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _children(value: Any) -> list[tuple[Any, Any]]:
    """(key, child) pairs shown for an expanded container: ``None`` fields dropped, scalar fields
    before nested ones (ids and statuses matter more than sub-structures), long lists cut."""
    if isinstance(value, dict):
        present = [(k, v) for k, v in value.items() if v is not None]
        return [kv for kv in present if not isinstance(kv[1], (dict, list))] + [
            kv for kv in present if isinstance(kv[1], (dict, list))
        ]
    return list(enumerate(value[:_LIST_ITEMS]))


def _show(value: Any, path: tuple[Any, ...], expanded: set[tuple[Any, ...]]) -> Any:
    """The value with every container not in ``expanded`` collapsed to a size marker."""
    if isinstance(value, str):
        return value if len(value) <= _STR_CHARS else value[: _STR_CHARS - 1] + "…"
    if not isinstance(value, (dict, list)):
        return value
    if path not in expanded:
        return f"[{len(value)} items]" if isinstance(value, list) else f"{{{len(value)} fields}}"
    shown = {k: _show(v, (*path, k), expanded) for k, v in _children(value)}
    if isinstance(value, list):
        rest = len(value) - _LIST_ITEMS
        return [*shown.values(), *([f"…+{rest} more"] if rest > 0 else [])]
    return shown


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_row(row: Any, budget: int) -> str:
    """One row as compact JSON of at most ``budget`` characters, disclosed breadth-first.

    The top level is shown first; then nested containers are expanded shallowest first (scalar
    fields before sub-structures), each only if the row still fits — so a big sub-structure
    (a product's 15 variants) stays a marker while small, useful ones (an address) open. Only a
    row whose top level alone is too long is cut.
    """
    expanded: set[tuple[Any, ...]] = {()}
    queue: list[tuple[tuple[Any, ...], Any]] = [((), row)]
    text = _dumps(_show(row, (), expanded))
    while queue:
        path, value = queue.pop(0)
        if path not in expanded:
            expanded.add(path)
            candidate = _dumps(_show(row, (), expanded))
            if len(candidate) > budget:
                expanded.discard(path)
                continue
            text = candidate
        if isinstance(value, (dict, list)):
            queue += [((*path, k), v) for k, v in _children(value) if isinstance(v, (dict, list))]
    return text if len(text) <= budget else text[: max(1, budget - 1)] + "…"


def _collections(domain: Domain) -> dict[str, dict[str, Any]]:
    """``{name: {key: row}}`` for every table, and for every list-typed field (keys are indices)."""
    base = domain.base_db()
    out: dict[str, dict[str, Any]] = {}
    for name in base.layout.fields:  # model field order: deterministic (``layout.tables`` is a set)
        value = getattr(base.model, name)
        if name in base.layout.tables:
            out[name] = dict(value)
        elif isinstance(value, list) and value:
            out[name] = {str(i): row for i, row in enumerate(value)}
    return out


def _anchor(collections: dict[str, dict[str, Any]]) -> str:
    """The collection whose first rows reference the most *other* collections' keys."""

    def fan_out(name: str) -> int:
        rows = [collections[name][k] for k in sorted(collections[name])[:_ANCHOR_PROBE]]
        leaves = {leaf for row in rows for leaf in _leaves(_jsonable(row))}
        return sum(1 for other, keyed in collections.items() if other != name and leaves & keyed.keys())

    return max(collections, key=lambda name: (fan_out(name), -list(collections).index(name)))


def _sample_rows(collections: dict[str, dict[str, Any]], rng: random.Random, k: int) -> list[tuple[str, list[Any]]]:
    chosen: list[tuple[str, list[Any]]] = []
    seen: set[str] = set()
    remaining = list(collections)
    name = _anchor(collections) if collections else None
    while name is not None:
        keys = sorted(collections[name])
        linked = [key for key in keys if key in seen]
        picks = rng.sample(linked, min(k, len(linked)))
        others = [key for key in keys if key not in set(picks)]
        picks += rng.sample(others, min(k - len(picks), len(others)))
        rows = [_jsonable(collections[name][key]) for key in picks]
        for row in rows:
            seen.update(_leaves(row))
        chosen.append((name, rows))
        remaining.remove(name)
        # Next: the collection with the most keys named by what was already chosen.
        name = max(remaining, key=lambda n: (len(seen & collections[n].keys()), -remaining.index(n)), default=None)
    return chosen


def _render_table(name: str, rows: list[Any], total: int, budget: int) -> list[str]:
    header = f"{name} ({len(rows)} of {total}):"
    share = max(16, (budget - len(header) - 1) // max(1, len(rows)) - 1)
    return [header, *(render_row(row, share) for row in rows)]


def _domain_hook(domain: Domain) -> Callable[..., str] | None:
    hook = getattr(domain, "sample_entities", None)
    if callable(hook):
        return hook
    from eigendspy.domains import BUILTIN

    if domain.name not in BUILTIN:
        return None
    module = importlib.import_module(f"eigendspy.domains.{domain.name}")
    hook = getattr(module, "sample_entities", None)
    return hook if callable(hook) else None


def sample_entities(domain: Domain, rng: random.Random, k: int = 3, max_chars: int = 1500) -> str:
    """A few real rows of the agent DB, as compact JSON lines under ``max_chars`` characters.

    Args:
        domain: The domain whose agent DB (``domain.base_db()``) is sampled.
        rng: The random source; the same seed gives the same sample (the engine seeds it per
            work item, so reruns and resumed runs generate from the same entities).
        k: Rows per table (fewer when a table is smaller).
        max_chars: Hard budget of the returned text, shared equally by the tables and rows (what
            a short row leaves goes to the tables after it). Each row is disclosed breadth-first
            within its share (see `render_row`).

    Returns:
        Lines ``"<table> (<k> of <n>):"`` each followed by one JSON row per line.

    Example:
        ```python
        text = sample_entities(get_domain("retail"), random.Random(7), k=2, max_chars=1200)
        ```
    """
    if k < 1 or max_chars < 40:
        raise ValueError("sample_entities needs k >= 1 and max_chars >= 40")
    hook = _domain_hook(domain)
    if hook is not None:
        return hook(domain, rng, k, max_chars)[:max_chars]
    collections = _collections(domain)
    if not collections:
        return ""
    chosen = _sample_rows(collections, rng, k)
    # Equal shares per table; what a terse table leaves unused goes to the tables after it.
    lines: list[str] = []
    left = max_chars
    for index, (name, rows) in enumerate(chosen):
        share = left // (len(chosen) - index)
        block = _render_table(name, rows, len(collections[name]), share)
        left -= sum(len(line) + 1 for line in block)
        lines += block
    return "\n".join(lines)[:max_chars]
