"""Hand each training step's LoRA adapter to a rollout server exactly once, whatever the number of ranks.

Why one loader: under DDP every rank holds the same weights after a step, and all ranks sample from one
shared vLLM server. If every rank saved and loaded ``policy-step-N`` itself, each load would unload the
adapter the previous load replaced while other ranks' requests still named it, and those requests got
404 "model does not exist" (11 of 17 in flight with two ranks on the test server). So rank 0 saves and
loads, every rank waits for it, and the others only switch their requests to the new name.

The adapter directory must be readable by the server at the same path (vLLM reads ``lora_path`` on its
own filesystem): one machine, or storage shared by the trainer's rank 0 and the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class AdapterPublishError(RuntimeError):
    """Rank 0 could not save or load this step's adapter; raised on the other ranks with its message."""


def publish_adapter(
    accelerator: Any,
    model: Any,
    backend: Any,
    adapter_dir: str,
    step: int,
    *,
    broadcast: Callable[[list[Any]], list[Any]] | None = None,
) -> str:
    """Save the step's adapter and make ``backend`` sample from it on every rank; returns its name.

    Every rank must call this at the same step (TRL calls the rollout function on all of them). The
    first barrier guarantees no rank still has requests in flight on the adapter rank 0 is about to
    unload; the broadcast of rank 0's outcome is the second barrier, so no rank samples before the new
    adapter serves, and a failed load stops every rank with the same message instead of hanging them.

    A backend with ``use_adapter`` (a shared server) is loaded by rank 0 only; any other backend is
    per-process, so every rank loads the saved adapter into its own copy.

    Args:
        accelerator: The trainer's ``accelerate.Accelerator`` (``is_main_process``, ``wait_for_everyone``).
        model: The trained (PEFT) model; only rank 0 saves it.
        backend: The rollout backend (``load_adapter``, optionally ``use_adapter``).
        adapter_dir: Where step adapters go, as a path both rank 0 and the server can read.
        step: The trainer's global step; the adapter is ``policy-step-<step>`` saved at ``<dir>/step-<step>``.
        broadcast: Sends rank 0's list to all ranks (default: ``accelerate.utils.broadcast_object_list``).

    Raises:
        AdapterPublishError: On ranks other than 0, when rank 0 failed (rank 0 raises its own error).
    """
    name, path = f"policy-step-{step}", f"{adapter_dir}/step-{step}"
    shared = callable(getattr(backend, "use_adapter", None))
    accelerator.wait_for_everyone()
    failure: Exception | None = None
    outcome: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            model.save_pretrained(path)
            if shared:
                backend.load_adapter(path, name)
        except Exception as exc:  # shared with the other ranks below, then re-raised here
            failure, outcome = exc, [f"{type(exc).__name__}: {exc}"]
    if broadcast is None:
        from accelerate.utils import broadcast_object_list

        broadcast = broadcast_object_list
    outcome = broadcast(outcome)
    if failure is not None:
        raise failure
    if outcome[0] is not None:
        raise AdapterPublishError(f"rank 0 could not publish LoRA adapter {name!r} from {path}: {outcome[0]}")
    if shared:
        if not accelerator.is_main_process:
            backend.use_adapter(name)
    else:
        backend.load_adapter(path, name)
    logger.debug("rollouts of step %d sample from adapter %r", step, name)
    return name
