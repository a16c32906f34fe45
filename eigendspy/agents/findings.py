"""The result of a deterministic dialogue pre-check, shared by every check module."""

from __future__ import annotations

from pydantic import BaseModel


class Finding(BaseModel):
    """One problem found in the dialogue; ``decisive`` findings reject it without a judge.

    ``blame`` is the party at fault (``"user"`` or ``"assistant"``); ``kind`` names the check (and,
    for pattern checks, the pattern) so a rejected row says which rule it broke.
    """

    kind: str
    blame: str
    reason: str
    decisive: bool = True
