"""Run DSPy role calls without DSPy's process-wide trace and LM history, so long runs keep flat memory.

Why: by default DSPy appends every ``Predict`` call to ``dspy.settings.trace`` (a process-wide list that
keeps the predictor, its inputs and its prediction alive) and every LM call to three histories (the
module-level ``GLOBAL_HISTORY``, ``lm.history`` and each calling module's ``history``), each capped at
10,000 entries. An episode's entries hold the formatted prompt (policy, tool schemas, transcript), so
a synthesis or evaluation run grew by ~100 MB per 256 episodes until the caps, for nothing: episodes
and engine items never read either.

`bounded_lm_state` runs a block with both off, except where someone asked for them:

* a trace the caller set itself is kept. DSPy's optimizers (``BootstrapFewShot``, GEPA, SIMBA, ...)
  run the program under ``dspy.context(trace=[])`` and read the list back to build demos and
  reflective datasets, so a list other than DSPy's process-wide default is left alone;
* ``keep_trace`` / ``keep_history`` (e.g. `EngineConfig.keep_lm_history`, ``run_episodes(...,
  keep_lm_history=True)``) or an enclosing `keep_lm_state` block (usage accounting that reads the
  LM history) keeps them, for every `bounded_lm_state` block nested inside too.

The keep markers live in DSPy's own settings overrides (``dspy.context``), so they travel wherever
DSPy's settings travel: into tasks, ``run_sync`` worker threads and ``dspy.Parallel`` / ``Evaluate``
threads. The trace is replaced by a `DiscardingTrace` (a list that drops what is appended) rather than
``None``, so modules that copy or extend the trace (``dspy.BestOfN``, ``dspy.Refine``) keep working.
Usage tracking (``dspy.track_usage``, ``settings.usage_tracker``) does not depend on the history and
keeps counting.

`role_turn_state` is what the role modules' turns run under: the same, plus their default adapter and
no per-call input type check, in one ``dspy.context`` (a turn runs ~10 times per dialogue, and every
context copies DSPy's whole settings dict).

DSPy is not imported here: in a process that never imported it no role can be tracing, so the blocks
do nothing there (the DSPy-free evaluation of a chat-API agent does not pay DSPy's import).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any, SupportsIndex

KEEP_TRACE_KEY = "eigendspy_keep_lm_trace"
"""DSPy settings key set (True) inside a block that asked to keep the trace."""
KEEP_HISTORY_KEY = "eigendspy_keep_lm_history"
"""DSPy settings key set (True) inside a block that asked to keep the LM history."""


class DiscardingTrace(list):  # type: ignore[type-arg]
    """A trace list that retains nothing: DSPy's ``Predict`` appends to it, ``BestOfN`` extends it."""

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Iterable[Any]) -> None:
        pass

    def insert(self, index: SupportsIndex, item: Any) -> None:
        pass

    def __iadd__(self, items: Iterable[Any]) -> DiscardingTrace:  # type: ignore[override,misc]
        return self


def _default_trace() -> Any:
    """DSPy's process-wide trace list (the one ``dspy.configure`` holds), or None if unknown."""
    module = sys.modules.get("dspy.dsp.utils.settings")
    config = getattr(module, "main_thread_config", None)
    return config.get("trace") if isinstance(config, dict) else None


def _dspy() -> ModuleType | None:
    return sys.modules.get("dspy")


def caller_trace() -> bool:
    """True when the current trace is a list someone set for this block (an optimizer's
    ``dspy.context(trace=[])``), not DSPy's process-wide default and not a discarding one."""
    dspy = _dspy()
    if dspy is None:
        return False
    trace = dspy.settings.trace
    return isinstance(trace, list) and not isinstance(trace, DiscardingTrace) and trace is not _default_trace()


def _asked(dspy: ModuleType, key: str) -> bool:
    # ``in`` first: DSPy's settings raise (and build a message for) an AttributeError per missing key, and these
    # keys are missing on every turn that did not ask
    settings = dspy.settings
    return key in settings and bool(settings[key])


def _bounded_overrides(dspy: ModuleType, keep_trace: bool, keep_history: bool) -> dict[str, Any]:
    """The DSPy settings overrides `bounded_lm_state` applies (empty when nothing changes)."""
    overrides: dict[str, Any] = {}
    if keep_trace:
        overrides[KEEP_TRACE_KEY] = True
    elif not (_asked(dspy, KEEP_TRACE_KEY) or caller_trace() or isinstance(dspy.settings.trace, DiscardingTrace)
              or dspy.settings.trace is None):
        overrides["trace"] = DiscardingTrace()
    if keep_history:
        overrides[KEEP_HISTORY_KEY] = True
    elif not _asked(dspy, KEEP_HISTORY_KEY) and not dspy.settings.disable_history:
        overrides["disable_history"] = True
    return overrides


@contextlib.contextmanager
def bounded_lm_state(*, keep_trace: bool = False, keep_history: bool = False) -> Iterator[None]:
    """Run the block with DSPy's trace and LM history off, unless kept (see the module doc).

    Args:
        keep_trace: Keep appending to the current trace (also for blocks nested inside).
        keep_history: Keep recording LM history (also for blocks nested inside).

    Example:
        ```python
        with bounded_lm_state():
            pred = await assistant.acall(policy=policy, dialogue=dialogue, tools=tools)
        ```
    """
    dspy = _dspy()
    with _overridden(dspy, _bounded_overrides(dspy, keep_trace, keep_history) if dspy is not None else {}):
        yield


@contextlib.contextmanager
def role_turn_state(adapter: Any = None) -> Iterator[None]:
    """What a role module's turn runs under, as one ``dspy.context`` (DSPy copies its whole settings dict
    per context, and a turn is entered ~10 times a dialogue):

    * `bounded_lm_state` (no retained trace/history unless asked for);
    * ``adapter`` where the caller set none (what ``cached_adapter.default_adapter_scope`` does);
    * no per-call input type check (``warn_on_type_mismatch=False``): the role builds its inputs itself
      (strings and the ``list[dspy.Tool]`` it made), so DSPy's recursive check of every call's values
      against the signature (every tool of the list, each call) can only pass; it only ever logs a warning.

    Args:
        adapter: The adapter for calls where ``dspy.settings.adapter`` is None; None changes nothing.
    """
    dspy = _dspy()
    if dspy is None:
        yield
        return
    overrides = _bounded_overrides(dspy, False, False)
    if adapter is not None and dspy.settings.adapter is None:
        overrides["adapter"] = adapter
    if "warn_on_type_mismatch" in dspy.settings and dspy.settings.warn_on_type_mismatch:
        overrides["warn_on_type_mismatch"] = False
    with _overridden(dspy, overrides):
        yield


def _overridden(dspy: Any, overrides: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """``dspy.context(**overrides)``, or nothing when there is nothing to override (a context copies all settings)."""
    return dspy.context(**overrides) if overrides else contextlib.nullcontext()


@contextlib.contextmanager
def keep_lm_state(*, trace: bool = True, history: bool = True) -> Iterator[None]:
    """Ask for DSPy's trace and/or LM history inside the block: nested `bounded_lm_state` blocks keep them.

    For callers that read them: usage accounting over ``GLOBAL_HISTORY``, ``inspect_history`` while
    debugging, a custom teleprompter that reads the process-wide trace. Unlike ``bounded_lm_state``
    it turns nothing off itself.
    """
    dspy = _dspy()
    marks = {key: True for key, asked in ((KEEP_TRACE_KEY, trace), (KEEP_HISTORY_KEY, history)) if asked}
    with dspy.context(**marks) if marks and dspy is not None else contextlib.nullcontext():
        yield
