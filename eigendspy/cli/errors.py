"""The CLI's single error boundary: every mistake a user can make becomes one line on stderr.

Why one module: the commands raise the library's own exceptions (`TaskFileError`, `DataError`,
pydantic's `ValidationError`, `FileNotFoundError`, ...) and must not each re-invent how to show
them. `run_cli` runs the typer app outside standalone mode, maps each known exception to one
line naming the file, flag or value and the fix, and exits with 2 for a usage error (a bad flag,
value, path or input file) and 1 for a failure (an LM that stays down, an unexpected error). The
traceback is shown only with ``--debug`` or ``EIGENDSPY_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import PurePath
from types import TracebackType
from typing import NoReturn

import typer
from pydantic import ValidationError

from eigendspy.engine.store.manifest import ManifestError, ManifestMissingError, RunExistsError
from eigendspy.lm.resilience import LMUnavailableError

USAGE = 2
FAILURE = 1
DEBUG_ENV = "EIGENDSPY_DEBUG"
#: Local variable names that hold the file being read, searched from the innermost frame outwards.
_FILE_NAMES = ("path", "file", "filename", "results", "self")


class CLIError(Exception):
    """A user-facing error raised by a command: ``message`` is the whole line, ``code`` the exit code."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


class _State:
    """Set by the ``--debug`` global option (a typer callback) before any command runs."""

    debug = False


def set_debug(enabled: bool) -> None:
    """Show full tracebacks for this process (the ``--debug`` global option)."""
    _State.debug = enabled


def debug_enabled() -> bool:
    return _State.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def file_in_traceback(tb: TracebackType | None) -> str | None:
    """The file being read when the error was raised, from the innermost frame that holds one.

    Decoding errors (`UnicodeDecodeError`, `json.JSONDecodeError`, `RecursionError`) do not carry the
    file name, but the frame that read the file does (``Path.read_text``'s ``self``, a ``path`` local).
    """
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for name in _FILE_NAMES:
            value = frame.f_locals.get(name)
            if isinstance(value, PurePath) and (name != "self" or value.suffix):
                return str(value)
            if isinstance(value, str) and name != "self" and value.endswith((".json", ".toml", ".md", ".jsonl")):
                return value
    return None


def _where(exc: BaseException) -> str:
    name = file_in_traceback(exc.__traceback__)
    return f"{name}: " if name else ""


def _first_field(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"field {loc!r}: {first['msg']}"


def describe(exc: BaseException) -> tuple[str, int]:
    """One line (without the ``error:`` prefix) and the exit code for ``exc``."""
    if isinstance(exc, CLIError):
        return str(exc), exc.code
    if isinstance(exc, typer.TyperException):  # typer's (vendored click's) usage errors: a bad flag or value
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return exc.format_message() + hint, getattr(exc, "exit_code", USAGE) or FAILURE
    if isinstance(exc, LMUnavailableError):
        return str(exc), FAILURE
    if isinstance(exc, RunExistsError):  # the store says "resume"; the CLI user has the flags
        return f"{exc.path} is not empty; use --resume to continue the run stored there or choose another --out", USAGE
    if isinstance(exc, ManifestMissingError):
        if exc.has_records:
            return (f"{exc.path} not found: {exc.root} holds a run's records but no manifest; restore it from a copy "
                    "of the run, or synthesize again with another --out", USAGE)
        return f"{exc.path} not found: {exc.root} is not a run directory; give a directory that synth wrote", USAGE
    if isinstance(exc, ManifestError):
        return (f"{exc.path}: {exc.reason}; restore it from a copy of the run, or synthesize again with another "
                "--out", USAGE)
    if isinstance(exc, UnicodeDecodeError):
        return (f"{_where(exc)}not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save the file as UTF-8", USAGE)
    if isinstance(exc, json.JSONDecodeError):
        return (f"{_where(exc)}not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                "fix or regenerate the file", USAGE)
    if isinstance(exc, RecursionError):
        return f"{_where(exc)}nested too deeply to read; this is not a file eigendspy wrote", USAGE
    if isinstance(exc, ValidationError):
        return f"{_where(exc)}{_first_field(exc)} (model {exc.title})", USAGE
    if isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else "unknown key"
        if " " not in text:  # a bare missing key: a required field absent from an input file
            text = f"{_where(exc)}missing required field {text!r}"
        return text, USAGE
    if isinstance(exc, FileNotFoundError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or 'not found'}; check the path", USAGE
    if isinstance(exc, FileNotFoundError | FileExistsError | NotADirectoryError | IsADirectoryError | ValueError):
        return str(exc), USAGE
    return f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", FAILURE


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr (and its traceback first when debugging); its exit code."""
    message, code = describe(exc)
    if debug_enabled() and not isinstance(exc, typer.TyperException | CLIError):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print_error(message)
    return code


def print_error(message: str) -> None:
    """``error: MESSAGE`` as one line on stderr (red on a terminal), whatever newlines ``message`` holds."""
    typer.secho("error: ", fg="red", err=True, nl=False)
    typer.echo(_one_line(message), err=True)


def run_cli(app: Callable[..., object], args: Sequence[str] | None = None, prog_name: str = "eigendspy") -> NoReturn:
    """Run ``app`` (a typer app) and exit: 0 on success, `USAGE` or `FAILURE` with one line on error."""
    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(FAILURE)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # the boundary: every error becomes one line
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare command: its help text is already printed
            sys.exit(getattr(exc, "exit_code", USAGE))
        sys.exit(report(exc))
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["CLIError", "DEBUG_ENV", "FAILURE", "USAGE", "debug_enabled", "describe", "file_in_traceback",
           "print_error", "report", "run_cli", "set_debug"]
