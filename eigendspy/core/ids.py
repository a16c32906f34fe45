"""Seeded id source: tools that mint ids (bill ids, reservation ids...) draw from here.

Why: tau2-bench draws some ids from ``uuid4()``, which makes replays and state hashes
irreproducible. Each environment owns an `IdSource`; a seeded one gives the same ids on every
replay, and a counter reproduces the ids tau2's oracle recorded (``B00000001``, ...).
"""

from __future__ import annotations

import random
import uuid


class IdSource:
    """Deterministic replacement for ``uuid.uuid4``.

    Args:
        seed: Seeds a private RNG; ``None`` means a counter: the n-th uuid is
            ``UUID(f"{n:08x}" + 24 * "0")`` (n = 1, 2, ...), as in tau2's recorded oracle.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self.counter = 0
        self._rng = random.Random(seed) if seed is not None else None

    def uuid4(self) -> uuid.UUID:
        self.counter += 1
        if self._rng is None:
            return uuid.UUID(f"{self.counter:08x}" + 24 * "0")
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def hex(self, length: int = 8) -> str:
        return self.uuid4().hex[:length]

    def fork(self) -> IdSource:
        twin = IdSource(self.seed)
        twin.counter = self.counter
        if self._rng is not None:
            twin._rng = random.Random()
            twin._rng.setstate(self._rng.getstate())
        return twin
