"""Keep each role's own LM through stock DSPy optimizers.

Why: eigendspy roles carry per-role LMs (``Assistant(lm=...)`` sets ``predictor.lm``), but stock
DSPy optimizers do not return them intact (DSPy 3.4):

- ``dspy.BootstrapFewShot.compile`` starts the student from ``student.reset_copy()``
  (``teleprompt/bootstrap.py``, ``_prepare_student_and_teacher``), and ``Module.reset_copy`` calls
  ``Predict.reset()``, which sets ``self.lm = None`` (``primitives/base_module.py``,
  ``predict/predict.py``). The same happens wherever ``reset_copy`` is used: ``LabeledFewShot``,
  ``BootstrapFewShotWithRandomSearch``, ``KNNFewShot``, and MIPROv2's zero-shot demo set
  (``teleprompt/utils.py`` ``create_n_fewshot_demo_sets``). The compiled role then has no LM
  unless a global one is configured (``dspy.configure(lm=...)``).
- ``dspy.GEPA`` (``gepa_utils.DspyAdapter.build_program``) and ``dspy.MIPROv2`` (``compile``,
  ``_optimize_prompt_parameters``) build candidates with ``Module.deepcopy()``, which deep-copies
  each LM: the compiled role works, but with a *copy* of its LM — a separate ``history`` and
  callbacks list, and ``predictor.lm is my_lm`` is false.

The pattern: record each predictor's LM by name before compiling, re-attach it afterwards.

```python
with keeping_role_lms(program) as keep:
    compiled = keep(dspy.BootstrapFewShot(metric=m).compile(program, trainset=train))
# or, in one call:
compiled = compile_keeping_lms(dspy.GEPA(metric=m, reflection_lm=big_lm, auto="light"), program,
                               trainset=train, valset=val)
```

An LM is re-attached only where the compiled predictor has none or has a copy of the same model, so
an optimizer that deliberately sets a new LM (``BootstrapFinetune``'s fine-tuned model) keeps it.
`eigendspy.optimizers.evolve` compiles this way with every optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import dspy

__all__ = ["compile_keeping_lms", "keep_role_lms", "keeping_role_lms", "record_role_lms"]

M = TypeVar("M", bound=dspy.Module)


def record_role_lms(program: dspy.Module) -> dict[str, Any]:
    """Each predictor's own LM by predictor name (``"assistant.turn"`` ...); predictors without one are left out."""
    return {name: predictor.lm for name, predictor in program.named_predictors() if predictor.lm is not None}


def _same_model(current: Any, original: Any) -> bool:
    """``current`` is a copy of ``original`` (what ``Module.deepcopy`` or ``LM.copy`` makes), not a new model."""
    return type(current) is type(original) and getattr(current, "model", None) == getattr(original, "model", None)


def keep_role_lms(compiled: M, original: dspy.Module | Mapping[str, Any]) -> M:
    """Re-attach the per-role LMs of ``original`` to ``compiled`` (in place, also returned).

    Args:
        compiled: What an optimizer returned.
        original: The program before compiling, or `record_role_lms` of it (take the record before
            compiling when the optimizer may change the program in place).

    Returns:
        ``compiled``, each predictor that had an LM in ``original`` holding that very LM object again
        (unless the optimizer gave it a different model).
    """
    lms = record_role_lms(original) if isinstance(original, dspy.Module) else dict(original)
    for name, predictor in compiled.named_predictors():
        lm = lms.get(name)
        if lm is not None and (predictor.lm is None or _same_model(predictor.lm, lm)):
            predictor.lm = lm
    return compiled


@contextlib.contextmanager
def keeping_role_lms(program: dspy.Module) -> Iterator[Callable[[M], M]]:
    """Record ``program``'s per-role LMs on entry; yields ``keep(compiled) -> compiled`` that re-attaches them."""
    lms = record_role_lms(program)

    def keep(compiled: M) -> M:
        return keep_role_lms(compiled, lms)

    yield keep


def compile_keeping_lms(optimizer: Any, program: M, **compile_kwargs: Any) -> M:
    """``optimizer.compile(program, **compile_kwargs)`` with ``program``'s per-role LMs kept (see the module doc)."""
    with keeping_role_lms(program) as keep:
        return keep(optimizer.compile(program, **compile_kwargs))
