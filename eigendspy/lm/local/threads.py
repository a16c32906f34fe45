"""How many torch threads batch-1 decoding of the embedded model should use on this machine, now.

Why it depends on the load: decoding one token reads every weight once (a 135M fp32 model: ~540 MB), a
short matrix-vector product per layer that a second thread speeds up only while that thread has a core to
itself. Measured with `demo-synth` on a 2-core box (docs/embedded_model.md): 96.6 s with 1 thread vs 64.8 s
with 2 when the machine was otherwise idle (same tokens), but 166 s vs 379 s with 2 on the same box shared
with other jobs — a busy thread pool waits for its slowest thread at every one of thousands of small ops.
"""

from __future__ import annotations

import os

__all__ = ["decode_threads"]


def decode_threads(requested: int = 0, *, max_threads: int = 2) -> int:
    """``requested`` if > 0; else (auto) ``max_threads`` capped by the cores, when the 1-minute load average
    leaves a core idle beyond this process's own, and 1 otherwise."""
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform: be safe
        return 1
    return max(1, min(max_threads, cores)) if load < cores - 0.5 else 1
