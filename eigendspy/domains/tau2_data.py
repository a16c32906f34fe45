"""Read a tau2-bench domain directory (the data overlay): DBs, tasks, splits, policy.

tau2's files are third-party data, so eigendspy never ships them: a user points a built-in
domain at their own checkout (``--data DIR`` or ``EIGENDSPY_TAU2_DATA``) and the domain then
uses tau2's own policy, database and tasks. Every failure names the file, and for tasks the
task id and the field.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from eigendspy.core.gc_pause import gc_paused
from eigendspy.core.task import Task, load_tasks

ENV_VAR = "EIGENDSPY_TAU2_DATA"


class DataError(ValueError):
    """Missing or invalid tau2 data; the message names the file (and task/field when relevant)."""


def resolve_data_dir(domain: str, data_dir: str | Path | None) -> Path | None:
    """The tau2 directory for ``domain``: explicit ``data_dir`` wins, then ``$EIGENDSPY_TAU2_DATA``.

    The environment variable may point at the domain directory itself or at the parent that
    holds one folder per domain (tau2's ``data/tau2/domains``).
    """
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise DataError(f"tau2 data directory not found: {path}")
        return path
    root = os.environ.get(ENV_VAR)
    if not root:
        return None
    path = Path(root)
    if (path / domain).is_dir():
        return path / domain
    return path if path.is_dir() else None


def read_document(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"required tau2 file not found: {path}")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        return json.loads(path.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: cannot parse ({exc})") from exc


def load_model(path: Path, model: type[BaseModel]) -> BaseModel:
    """Parse a DB file into its model; a validation error names the file and the field.

    Why this path: a JSON DB is validated straight from its bytes by pydantic's own parser (no
    intermediate dict of Python objects; the same model as ``model_validate(json.loads(...))``),
    and with the collector paused (`gc_paused`: parsing is otherwise GC-bound, and worse in a
    process that already holds a big heap). Both keep the parse linear in the file's size.
    """
    with gc_paused():
        if path.suffix == ".json" and path.exists():
            try:
                return model.model_validate_json(path.read_bytes())
            except ValidationError as exc:
                first = exc.errors()[0]
                if first["type"] == "json_invalid":
                    raise DataError(f"{path}: cannot parse ({first['msg']})") from exc
                raise _field_error(path, exc) from exc
        raw = read_document(path)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise _field_error(path, exc) from exc


def _field_error(path: Path, exc: ValidationError) -> DataError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return DataError(f"{path}: field {loc!r}: {first['msg']}")


def find_file(directory: Path, *names: str) -> Path:
    for name in names:
        if (directory / name).exists():
            return directory / name
    raise DataError(f"{directory}: none of {', '.join(names)} found")


def load_task_file(directory: Path, *names: str) -> list[Task]:
    return load_tasks(find_file(directory, *names))


def load_splits(directory: Path, name: str = "split_tasks.json") -> dict[str, list[str]]:
    path = directory / name
    if not path.exists():
        return {}
    raw = read_document(path)
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataError(f"{path}: expected an object mapping split names to lists of task ids")
    return raw
