"""Check the role LMs' settings before a run starts: a known provider, and its API key.

Why: ``dspy.LM`` checks nothing when built, so a model id with no provider or a hosted model
without its key only fails at the first call, minutes into a run, as a transport error that names
DSPy's own classes (``RouterConfig(api_keys=...)``) and leaves a half-made run directory behind.
This check needs no network and no key: it asks DSPy's offline routing (and LiteLLM's, for the
models DSPy hands to LiteLLM) which provider a model id selects and which environment variables
that provider reads its key from, and fails with one sentence naming the role, the variable and the
fix. When DSPy's routing cannot be introspected (another DSPy version) the key check is skipped
rather than guessed: the run then fails at its first call as before.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import dspy

from eigendspy.lm.config import LOCAL, ROLES, VLLM_PREFIX, LMSpec, RoleLMConfig

#: What a bad model id should look like instead.
_EXAMPLES = (
    f"write provider/model (e.g. openai/gpt-4o-mini), {VLLM_PREFIX}<model> with api_base for an "
    f"OpenAI-compatible server, or {LOCAL!r}"
)


@dataclass(frozen=True)
class Problem:
    """Why an LM cannot work; ``key_vars``: the environment variables to set for a missing API key."""

    text: str
    key_vars: tuple[str, ...] = ()


class LMConfigError(ValueError):
    """A role LM that cannot work as configured; ``role`` is the first role that uses it."""

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role


def _native_key_vars(lm: dspy.LM) -> tuple[bool, tuple[str, ...]] | None:
    """(routed, env vars of its key) from DSPy's offline routing; None when it cannot be asked.

    ``routed`` is False when DSPy hands the model to LiteLLM. A provider with a placeholder key
    (a local server such as ollama or vLLM) needs no variable.
    """
    try:
        from dspy._vendor.lm15.registry import lookup
        from dspy.clients.backend_selection import select_backend

        selection = select_backend(lm)
        if selection.resolution is None:
            return False, ()
        definition = lookup(selection.resolution.provider)
        if definition is None or definition.placeholder_key:
            return True, ()
        return True, tuple(definition.access.env_keys)
    except Exception:  # another DSPy's internals: skip the check, never block the run on it
        return None


def _litellm_key_vars(spec: LMSpec) -> tuple[str, ...] | None:
    """The env vars LiteLLM misses for ``spec``; None when LiteLLM knows no provider for its model id."""
    import litellm

    extra = dict(spec.model_extra or {})
    with contextlib.redirect_stdout(io.StringIO()):  # LiteLLM prints a provider list on a bad id
        try:
            litellm.get_llm_provider(
                spec.model, custom_llm_provider=extra.get("custom_llm_provider"), api_base=spec.api_base
            )
        except Exception:  # LiteLLM raises its BadRequestError here: no provider
            return None
        found = litellm.validate_environment(spec.model, api_key=extra.get("api_key"), api_base=spec.api_base)
    return tuple(found.get("missing_keys") or ())


def spec_problem(spec: LMSpec) -> Problem | None:
    """Why ``spec`` cannot work (no provider, no API key), or None when nothing is known to be wrong."""
    if spec.model == LOCAL:
        return None
    if spec.model.startswith(VLLM_PREFIX):  # a key-less local server: the placeholder key is sent
        if spec.api_base:
            return None
        return Problem(f"{spec.model!r} needs api_base (the server's URL, e.g. http://localhost:8000/v1)")
    try:
        lm = dspy.LM(spec.model, cache=False, **spec.kwargs())
    except Exception as exc:  # DSPy's own refusal of these settings, said in its words
        return Problem(f"{spec.model!r} cannot be used: {exc}")
    native = _native_key_vars(lm)
    if native is None or (spec.model_extra or {}).get("api_key"):
        return None
    routed, variables = native
    if routed:  # DSPy reads the first of these that is set
        if not variables or any(os.environ.get(v) for v in variables):
            return None
        return Problem(f"{spec.model!r} needs an API key and {' or '.join(variables)} is not set", variables[:1])
    missing = _litellm_key_vars(spec)  # LiteLLM needs every one of these
    if missing is None:
        return Problem(f"{spec.model!r} names no provider DSPy or LiteLLM knows; {_EXAMPLES}")
    if not missing:
        return None
    return Problem(
        f"{spec.model!r} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not set", missing
    )


def _entry(config: RoleLMConfig, role: str, source: str) -> str:
    if role in config.roles:
        return f"[lm.roles] {role} in {source}"
    others = [r for r in ROLES if r not in config.roles and r != role]
    return f"[lm] default in {source}" + (f", also used by {', '.join(others)}" if others else "")


def _fix(spec: LMSpec, problem: Problem) -> str:
    if problem.key_vars:
        return (
            f"set {' and '.join(problem.key_vars)} in the environment, or give that entry an api_key "
            f'({{ model = "{spec.model}", api_key = "..." }})'
        )
    return "fix that entry"


def check_role_lms(config: RoleLMConfig, source: str = "the LM config", roles: Sequence[str] = ROLES) -> None:
    """Raise `LMConfigError` for the first of ``roles`` whose LM cannot work; each distinct LM is checked once.

    ``source`` names the file the config came from, so the message says where to fix it; ``roles``
    are the roles the caller will use (a command that needs two roles is not refused for a third).
    """
    checked: set[str] = set()
    for role in roles:
        spec = config.spec_for(role)
        key = spec.model_dump_json()
        if key in checked:
            continue
        checked.add(key)
        problem = spec_problem(spec)
        if problem is not None:
            raise LMConfigError(
                role,
                f"role {role!r} ({_entry(config, role, source)}): {problem.text}; {_fix(spec, problem)}",
            )


__all__ = ["LMConfigError", "Problem", "check_role_lms", "spec_problem"]
