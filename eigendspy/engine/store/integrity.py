"""Tamper evidence for run-store lines: a checksum per record, and one parser that judges every line.

A line that parses as JSON is not yet a record: one flipped byte can change a reward or a stage and
still parse, and the store would then count altered work as done and export it. So each written
line carries ``checksum``, the sha256 of the record's canonical JSON (sorted keys, compact, without
the checksum field). Reading a line decodes its bytes as UTF-8, parses it, checks the checksum and
validates the record's schema; any failure is a `BadLine` naming why, which the store reports
(file + line) and treats as work not done. Lines written before checksums existed have no
``checksum`` field and are still accepted on schema alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

CHECKSUM_FIELD = "checksum"
M = TypeVar("M", bound=BaseModel)


class BadLine(ValueError):
    """A stored line that is not a valid record; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CorruptLine:
    """Where a bad line is (file and 1-based line number) and why it was rejected."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"


def checksum(data: dict[str, Any]) -> str:
    """sha256 (hex) of ``data``'s canonical JSON, the checksum field itself left out."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def encode_record(record: BaseModel) -> bytes:
    """One JSONL line (newline included) for ``record`` with its checksum added."""
    data = record.model_dump(mode="json")
    data[CHECKSUM_FIELD] = checksum(data)
    return (json.dumps(data) + "\n").encode("ascii")  # escaped: any text, even a lone surrogate, reads back


def decode_record(raw: bytes, model: type[M]) -> M:
    """Parse one stored line into ``model``, or raise `BadLine` (bad UTF-8, JSON, checksum or schema).

    The checksum is checked before the schema, so a byte flip that keeps the line schema-valid
    (an altered reward or stage) is still caught.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(f"not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadLine(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadLine("not a JSON object")
    stored = data.pop(CHECKSUM_FIELD, None)
    if stored is not None and stored != checksum(data):
        raise BadLine("checksum mismatch (content altered)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise BadLine(f"invalid {model.__name__}: {where}: {first['msg']}") from None
