"""Hash-collision guard for every set, dict and set-algebra operation a predicate performs.

Why: CPython resolves hash collisions by probing, so keys that share one full hash value make each
insert or lookup walk a chain as long as the container, all inside one C call the step budget never
sees. Such keys are cheap to write: every multiple of ``2**61 - 1`` hashes to 0 on 64-bit CPython, and
``set(range(0, n * M, M))`` costs about n steps. Measured on the development machine (CPython 3.11):
20,000 such keys take 3.6 s to put in a set and 90,000 take minutes, while keys that merely share
their low bits are harmless because probing mixes in the high bits after a few steps (100,000 keys
``i << 44`` take 27 ms against 5 ms for ``range(100000)``). So only full hash values are checked.

The rule: before a hashed container is built, or set algebra runs, the keys involved are grouped by
hash value (linear, charged) and more than `MAX_SAME_HASH` *distinct* keys sharing one value are
refused. Duplicates are fine (an insert stops at the first equal entry), and so are the few natural
collisions of real data (``hash(-1) == hash(-2)``, tuples built from them). Containers passed in as
variables are trusted and not vetted on lookup; the time limit bounds what they can cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from eigendspy.scoring.sandbox.rules import BULK, SCALARS, TEXT, SandboxError

if TYPE_CHECKING:
    from eigendspy.scoring.sandbox.interpreter import Interpreter

MAX_SAME_HASH = 64
"""Most distinct keys that may share one hash value: a lookup then compares at most this many keys."""
FLAT = SCALARS | TEXT


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


def vet_keys(interp: Interpreter, keys: list[Any]) -> None:
    """Refuse ``keys`` if more than `MAX_SAME_HASH` distinct ones share a hash value; charges the check.

    Unhashable keys are skipped: the operation itself raises Python's TypeError if it ever hashes them
    (``d.items() & other`` hashes only the matches, so refusing them here would change results).
    Flat keys (numbers, strings) whose hash value is shared by at most `MAX_SAME_HASH` keys need no
    comparing here (the common case: overlapping operands of set algebra); they are charged for the
    comparisons the container will make, at most the group size squared. Larger groups, and any
    group of nested keys (whose comparisons are not flat), are counted key by key.
    """
    interp.charge(len(keys) // BULK)
    try:
        hashes = list(map(hash, keys))
    except TypeError:
        keys = [key for key in keys if _hashable(key)]
        hashes = list(map(hash, keys))
    counts = Counter(hashes)  # a hash value hashes to itself, so counting them cannot collide in turn
    if len(counts) == len(hashes):
        return
    interp.charge(len(counts) // BULK)
    if set(map(type, keys)) <= FLAT:
        interp.charge(sum(c * c for c in counts.values() if 1 < c <= MAX_SAME_HASH) // BULK)
        crowded = {value for value, c in counts.items() if c > MAX_SAME_HASH}
    else:
        crowded = {value for value, c in counts.items() if c > 1}
    if not crowded:
        return
    interp.charge(len(hashes) // BULK)
    groups: dict[int, list[Any]] = {}
    for value, key in zip(hashes, keys, strict=True):
        if value in crowded:
            groups.setdefault(value, []).append(key)
    for group in groups.values():
        _count_distinct(interp, group)


def _count_distinct(interp: Interpreter, group: list[Any]) -> None:
    """Count the distinct keys of one hash value as a set would (identity, then ``==``); refuse too many.

    Each key is compared with the distinct ones found so far, exactly the comparisons the container
    itself will make, and charged as it goes: flat keys per `BULK` comparisons, nested ones (a tuple
    compares element-wise) by a walk per comparison.
    """
    reps: list[Any] = []
    pending = 0  # flat comparisons not yet charged
    for key in group:
        probes = 0
        for rep in reps:
            probes += 1
            if key is rep or key == rep:
                break
        else:
            reps.append(key)
            if len(reps) > MAX_SAME_HASH:
                raise SandboxError(
                    f"more than {MAX_SAME_HASH} distinct keys share one hash value; sets, dicts and set "
                    f"algebra allow at most {MAX_SAME_HASH} (colliding keys, such as multiples of "
                    "2**61 - 1, make hashing quadratic)"
                )
        if type(key) in SCALARS:
            pending += probes
        elif type(key) in TEXT:
            pending += probes * (1 + len(key) // BULK)
        else:
            for _ in range(probes):
                interp.weigh(key)
        if pending >= BULK:
            interp.charge(pending // BULK)
            pending %= BULK
    interp.charge(pending // BULK)


def members(value: Any) -> list[Any]:
    """The keys a set operation would hash from ``value`` (none if it is not iterable: Python raises)."""
    try:
        return list(value)
    except TypeError:
        return []


def vet_operands(interp: Interpreter, *operands: Any) -> list[Any]:
    """Prepare the operands of set algebra (``|``, ``&``, ``-``, ``^``, ``set.union(...)``...).

    Iterators are materialised (charged per item) so their keys can be inspected, both sides are
    charged by size (the C code walks and hashes them all), and their keys are vetted together.

    Returns:
        The operands, iterators replaced by lists of their items.
    """
    ready = [interp.collect(x) if isinstance(x, Iterator) else x for x in operands]
    interp.weigh(*(x.keys() if isinstance(x, dict) else x for x in ready))  # a dict's values are not hashed
    vet_keys(interp, [key for x in ready for key in members(x)])
    return ready


def dict_pairs(interp: Interpreter, items: list[Any]) -> list[Any]:
    """``dict()``'s argument items, with the keys it would hash vetted.

    Lists, tuples and strings stand for themselves; any other iterable item is materialised, as
    ``dict()`` would iterate it. Items of the wrong length are left for ``dict()`` to reject.
    """
    pairs = [item if isinstance(item, tuple | list | str | bytes) else tuple(interp.collect(item)) for item in items]
    vet_keys(interp, [pair[0] for pair in pairs if len(pair) == 2])
    return pairs
