"""Before a task becomes a reward: check it belongs to the world GRPO is about to train in.

Why: an ``rl_tasks`` export is a list of gold solutions and checkers written against one database. Trained
against another (a different generator seed, size, or tau2 data directory), a task's checker can pay for the
wrong actions or never pay at all — silently, since the trainer only sees rewards. So exports record the
world they were validated against (`Domain.provenance`), and GRPO refuses a task set whose recorded world
differs from the configured one, and any task whose gold replay no longer earns the reward here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from eigendspy.core.domain import Domain
from eigendspy.core.task import Task
from eigendspy.scoring.execution import execution_check


class ProvenanceError(ValueError):
    """The task set does not belong to the configured domain; the message says which field differs and why."""


def check_rows(rows: Iterable[Mapping[str, Any]], domain: Domain) -> int:
    """Compare every ``rl_tasks`` row's recorded world with ``domain``'s; return how many rows recorded one.

    Rows exported before provenance existed (no ``db_hash``) pass here and are still gold-replayed.

    Raises:
        ProvenanceError: when a row names another domain or a different database.
    """
    here = domain.provenance()
    checked = 0
    for row in rows:
        if row.get("domain", domain.name) != domain.name:
            raise ProvenanceError(f"task {row.get('task_id')!r} was exported for domain {row.get('domain')!r}, "
                                  f"not {domain.name!r}")
        if not row.get("db_hash"):
            continue
        checked += 1
        if row["db_hash"] != here["db_hash"]:
            recorded = json.loads(row["domain_options"]) if row.get("domain_options") else {}
            raise ProvenanceError(
                f"task {row.get('task_id')!r} was validated against another {domain.name} database "
                f"(db_hash {row['db_hash'][:12]} with options {recorded} and data_dir {row.get('data_dir')}); "
                f"the configured one has db_hash {here['db_hash'][:12]} (options {here['domain_options']}, "
                f"data_dir {here['data_dir']}): set domain_options / data_dir to the export's")
    return checked


def check_gold(tasks: Iterable[Task], domain: Domain) -> None:
    """Execute every task's gold solution in ``domain`` as the data engine did before accepting it.

    The engine's own acceptance test (`eigendspy.scoring.execution_check`): every gold call succeeds, every
    write changes the state, the checker passes the gold replay and fails every mutant. Replaying the gold
    alone is not enough: the checker derives its expected state from that same replay, so a gold call that
    fails in this world would still "pass" it.

    Raises:
        ProvenanceError: naming the first task that fails, with the reasons.
    """
    for task in tasks:
        report = execution_check(domain, task)
        if not report.passed:
            reasons = "; ".join(report.reasons[:3]) or report.summary()
            raise ProvenanceError(f"task {task.id!r}: its gold solution no longer checks out in this "
                                  f"{domain.name} world ({reasons}); the task set does not match the domain")
