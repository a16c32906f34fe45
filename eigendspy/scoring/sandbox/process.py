"""Run a plain Python predicate in a resource-limited child process.

Why: some checks need more than the in-process expression language (lambdas, ``isinstance``,
f-strings...). Those run as ordinary Python in a separate interpreter started with ``python -I -S``,
an empty environment and ``cwd="/"``, capped by ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``,
``RLIMIT_NOFILE``, ``RLIMIT_FSIZE`` (no file writes) and a wall-clock timeout after which the child
is killed. The variables travel as JSON on stdin, the result comes back as JSON on stdout.

This contains *resources*, not a determined attacker: the child reduces builtins to a small set
and refuses ``_``-prefixed names and frame/format attributes (the usual escape routes), but it
still runs with this user's file-system permissions. Prefer `eigendspy.scoring.sandbox.predicate.evaluate_predicate`.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from eigendspy.scoring.sandbox.rules import PredicateResult

try:
    import resource
except ImportError:  # not POSIX: the child runs without rlimits, still under the wall-clock timeout
    resource = None  # type: ignore[assignment]

_CHILD = r"""
import ast, builtins, json, sys
import unicodedata  # the parser needs it for any non-ASCII identifier; loaded before files are capped
payload = json.loads(sys.stdin.read())
try:
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, 3))
except Exception:
    pass
SAFE = ("abs all any bool dict divmod enumerate filter float frozenset int isinstance len list map max "
        "min pow range reversed round set sorted str sum tuple zip ArithmeticError Exception KeyError "
        "TypeError ValueError IndexError ZeroDivisionError").split()
BLOCKED = {"format", "format_map", "mro", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code",
           "ag_frame", "ag_code", "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame",
           "tb_next"}
try:
    tree = ast.parse(payload["expr"], mode="eval")
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("_") or name in BLOCKED:
            raise PermissionError(f"access to {name!r} is not allowed")
    scope = dict(payload["variables"])
    scope["__builtins__"] = {n: getattr(builtins, n) for n in SAFE}
    value = eval(compile(tree, "<predicate>", "eval"), scope)
    if hasattr(value, "__next__"):
        value = list(value)
    passed = bool(value)
    def jsonable(obj):
        return sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else repr(obj)
    sys.setrecursionlimit(MAX_RESULT_DEPTH)  # the parent must be able to decode what we send
    try:
        text = json.dumps({"passed": passed, "value": value}, default=jsonable)
    except RecursionError:
        text = json.dumps({"error_type": "ValueError", "error": "the result is nested too deeply to return"})
    except Exception:
        text = json.dumps({"passed": passed, "value": repr(value)[:10000]})
    if len(text) > 1000000:
        text = json.dumps({"passed": passed, "value": None})
    sys.stdout.write(text)
    sys.stdout.flush()
except MemoryError:
    sys.stdout.write('{"error_type": "MemoryError", "error": "MemoryError"}')
    sys.stdout.flush()
except BaseException as exc:
    try:
        detail = str(exc)[:500]
    except BaseException:
        detail = ""
    sys.stdout.write(json.dumps({"error_type": type(exc).__name__, "error": detail}))
    sys.stdout.flush()
"""

MAX_RESULT_DEPTH = 200
"""Deepest result the child returns; the parent decodes it with plenty of recursion to spare."""


def _limit_child(memory_bytes: int, cpu_seconds: int) -> None:
    """``preexec_fn``: runs in the forked child before ``exec``; never asks for more than a hard limit.

    ``resource`` is imported at module level: importing after ``fork`` in a threaded parent could
    deadlock on the import lock.
    """
    wanted = {
        resource.RLIMIT_AS: memory_bytes,
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_NOFILE: 32,  # interpreter start-up opens a few module files; lowered to 3 later
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_CORE: 0,
    }
    for res, soft in wanted.items():
        _, hard = resource.getrlimit(res)
        # CPU: SIGXCPU at the soft limit, SIGKILL one second later if the child ignores it.
        new_hard = soft + 1 if res == resource.RLIMIT_CPU else soft
        if hard != resource.RLIM_INFINITY:
            soft, new_hard = min(soft, hard), min(new_hard, hard)
        resource.setrlimit(res, (soft, new_hard))


def evaluate_in_subprocess(
    expr: str, variables: Mapping[str, Any], timeout_s: float = 5.0, memory_mb: int = 256
) -> PredicateResult:
    """Evaluate a plain Python expression in a killed-on-timeout, memory-capped child process.

    Why: a predicate beyond the expression language still must not be able to hang or exhaust
    the worker; a separate process is the only thing that can be killed reliably. Never raises.

    Args:
        expr: A single Python expression; ``_``-prefixed names and attributes are refused.
        variables: JSON-serialisable values bound as globals (e.g. ``{"db": db_dump}``).
        timeout_s: Wall-clock budget; the child is killed when it runs out (also caps CPU time).
        memory_mb: Address-space cap of the child (``RLIMIT_AS``).

    Returns:
        A `PredicateResult`; timeouts, memory exhaustion and exceptions become ``error`` texts.
    """
    try:
        payload = json.dumps({"expr": expr, "variables": dict(variables)})
    except (TypeError, ValueError, RecursionError) as exc:
        return PredicateResult(passed=False, error=f"variables are not JSON-serialisable: {exc}")
    cpu_seconds = math.ceil(timeout_s) + 1
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", f"MAX_RESULT_DEPTH = {MAX_RESULT_DEPTH}\n{_CHILD}"],
            input=payload,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout_s,
            env={},
            cwd="/",
            preexec_fn=(lambda: _limit_child(memory_mb * 1024 * 1024, cpu_seconds)) if resource else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PredicateResult(
            passed=False, error=f"timeout: the predicate ran longer than {timeout_s} s and was killed"
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return PredicateResult(passed=False, error=f"could not run the sandbox subprocess: {exc}")
    memory_error = f"memory limit exceeded: the predicate needed more than {memory_mb} MB"
    if proc.returncode < 0:
        sig = -proc.returncode
        if sig in (signal.SIGXCPU, signal.SIGKILL):
            return PredicateResult(passed=False, error=f"timeout: CPU time limit of {cpu_seconds} s exceeded")
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return PredicateResult(passed=False, error=f"the sandbox subprocess was killed by signal {name}")
    try:
        result = json.loads(proc.stdout)
    except RecursionError:  # only if the child's own depth cap failed: still never raise
        return PredicateResult(passed=False, error="the sandbox result is nested too deeply to decode")
    except ValueError:
        if "MemoryError" in proc.stderr:
            return PredicateResult(passed=False, error=memory_error)
        tail = proc.stderr.strip()[-500:]
        return PredicateResult(passed=False, error=f"sandbox subprocess failed ({proc.returncode}): {tail}")
    if not isinstance(result, dict) or not ({"error_type", "passed"} & result.keys()):
        return PredicateResult(passed=False, error="the sandbox subprocess returned a malformed result")
    if "error_type" in result:
        if result["error_type"] == "MemoryError":
            return PredicateResult(passed=False, error=memory_error)
        return PredicateResult(passed=False, error=f"{result['error_type']}: {result['error']}")
    return PredicateResult(passed=bool(result["passed"]), value=result.get("value"))
