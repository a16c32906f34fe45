"""Export-time pre-checks: the deterministic dialogue checks, re-run on each accepted dialogue before it is exported.

Why at export as well as during synthesis: the trajectory validator rejects a dialogue with a
decisive pre-check finding (`eigendspy.agents.trajectory_prechecks.dialogue_findings`: prompt
leakage, format chatter, user failures, policy-order violations), but an export trusts each stored
record's ``accepted`` flag. That flag may come from an older version of the checks, from a
validator with other settings, or from a record written by hand, and such a dialogue would put a
recited prompt or a skipped policy lookup into the SFT rows, which teaches the next model to do
the same. The checks cost no LM call, so `export_all` re-runs them with their default settings and
leaves every accepted dialogue with a decisive finding out of both SFT sets, naming it in the
card (``rejected_at_export``) and in the result.

A module of its own so that `eigendspy.engine.export` stays about row formats (and within its size).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eigendspy.core.domain import Domain
from eigendspy.core.messages import Message
from eigendspy.core.records import DialogueRecord
from eigendspy.core.task import Task

# The checks live in `eigendspy.agents`, whose package imports DSPy; exporting (and the training stack that
# imports the export module) must work without DSPy, so they are imported where they run.
if TYPE_CHECKING:
    from eigendspy.agents.findings import Finding

logger = logging.getLogger(__name__)

__all__ = ["ExportRejection", "count_kinds", "decisive_findings", "screen_dialogues"]


def decisive_findings(messages: Sequence[Message], domain: Domain, task: Task | None) -> list[Finding]:
    """A dialogue's decisive pre-check findings; without its task, only the checks that need none
    (prompt leakage and format chatter on both sides, the domain's ordering rules)."""
    from eigendspy.agents.trajectory_prechecks import dialogue_findings

    found = dialogue_findings(task, messages, domain)
    return [f for f in found if f.decisive]


@dataclass(frozen=True)
class ExportRejection:
    """An accepted dialogue the export left out, with its decisive findings (the first one names it)."""

    record: DialogueRecord
    findings: tuple[Finding, ...]

    @property
    def kind(self) -> str:
        return self.findings[0].kind

    def line(self) -> str:
        """``"task_id work_key: kind: reason"`` of the first finding, naming the kinds of any others."""
        first, rest = self.findings[0], self.findings[1:]
        more = f" (+{len(rest)} more: {', '.join(f.kind for f in rest)})" if rest else ""
        return f"{self.record.task_id} {self.record.work_key}: {first.kind}: {first.reason}{more}"


def _task_of(record: DialogueRecord, tasks: Mapping[str, Task], domain: Domain) -> Task | None:
    """The dialogue's task: from the exported task records, else the domain's own (as the user rows find it)."""
    task = tasks.get(record.task_id)
    if task is None:
        try:
            task = domain.task(record.task_id)
        except KeyError:
            return None
    return task


def screen_dialogues(
    dialogues: Iterable[DialogueRecord], tasks: Mapping[str, Task], domain_of: Callable[[str], Domain]
) -> tuple[list[DialogueRecord], list[ExportRejection]]:
    """The records to export (every record but the rejected ones) and the accepted dialogues rejected here.

    Records the engine already rejected are passed through untouched: the row builders leave them out.
    """
    kept: list[DialogueRecord] = []
    rejected: list[ExportRejection] = []
    for record in dialogues:
        if record.accepted:
            domain = domain_of(record.domain)
            found = decisive_findings(record.messages, domain, _task_of(record, tasks, domain))
            if found:
                rejection = ExportRejection(record, tuple(found))
                rejected.append(rejection)
                logger.warning("export: leaving out accepted dialogue %s", rejection.line())
                continue
        kept.append(record)
    return kept, rejected


def count_kinds(rejected: Iterable[ExportRejection]) -> dict[str, int]:
    """``{finding kind: dialogues}``, each rejected dialogue counted once, under its first finding."""
    return dict(Counter(r.kind for r in rejected))
