"""Read training configs (TOML, YAML or JSON) into pydantic models, with errors that name the file.

Why one helper: SFT and GRPO runs are launched from files (``eigendspy train sft --config
FILE``, often under ``accelerate launch``), and a typo in a key should stop the run at once
with the file and key named, not surface as a default silently used hours later. The models
themselves are ``extra="forbid"``, so an unknown key is an error; this module only turns the
file into a dict and the validation error into a readable one.

Example::

    from eigendspy.train.config_io import load_config
    from eigendspy.train.sft import SFTRunConfig

    config = load_config("configs/sft_agent.toml", SFTRunConfig, overrides={"max_steps": 10})
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)

SUFFIXES = (".toml", ".yaml", ".yml", ".json")


class ConfigError(ValueError):
    """A config file is missing, unreadable, or does not validate against its model."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a TOML, YAML or JSON file holds, chosen by the file's suffix.

    Raises:
        ConfigError: if the file does not exist, has an unknown suffix, does not parse, or its top
            level is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r}; use one of {', '.join(SUFFIXES)}")
    except ConfigError:
        raise
    except Exception as exc:  # tomllib, yaml and json raise unrelated types
        raise ConfigError(f"{path}: cannot parse {suffix[1:]}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a table/mapping, got {type(data).__name__}")
    return data


def load_config(path: str | Path, model_cls: type[ModelT], overrides: dict[str, Any] | None = None) -> ModelT:
    """Validate a config file against ``model_cls``, after applying ``overrides``.

    Relative paths inside the file stay relative to the working directory (as on the command line),
    so a config can be shared between machines that check the repo out in different places.

    Args:
        path: A ``.toml``, ``.yaml``/``.yml`` or ``.json`` file.
        model_cls: The pydantic model the file describes (e.g. `eigendspy.train.sft.SFTRunConfig`).
        overrides: Top-level keys to replace (command-line flags); ``None`` values are ignored, so
            callers can pass every optional flag unconditionally.

    Raises:
        ConfigError: if the file cannot be read or does not validate; the message lists each bad key.
    """
    data = read_config_file(path)
    data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                             for err in exc.errors())
        raise ConfigError(f"{path}: invalid {model_cls.__name__}: {problems}") from exc


__all__ = ["SUFFIXES", "ConfigError", "load_config", "read_config_file"]
