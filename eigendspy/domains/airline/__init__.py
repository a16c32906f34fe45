"""The airline domain: an airline's reservations desk (book, change, cancel, compensate).

Built in: our own policy (``policy.md``, executable as `rules`) and a seeded DB generator
(`generate_db`), no tasks. With tau2 data (``data_dir`` pointing at tau2's ``domains/airline``,
or ``$EIGENDSPY_TAU2_DATA``) it uses tau2's ``db.json``, ``tasks.json``, ``split_tasks.json`` and
``policy.md``. The tools are the same in both cases and behave exactly like tau2's.
"""

from __future__ import annotations

from pathlib import Path

from eigendspy.core.domain import Domain
from eigendspy.core.policy_rules import IdentifyBeforeWrite
from eigendspy.domains import tau2_data
from eigendspy.domains.airline import rules, tools
from eigendspy.domains.airline.db import FlightDB
from eigendspy.domains.airline.generator import generate_db

__all__ = ["FlightDB", "generate_db", "load_domain", "rules"]

HERE = Path(__file__).parent

DB_FILES = ("db.json", "synthetic_db.json")
"""tau2's own DB first; the synthetic stand-in of the shared test snapshot (which lacks
``db.json``) second."""


def load_domain(data_dir: str | Path | None = None, seed: int = 0) -> Domain:
    """The airline domain, built in or over tau2's data directory.

    Args:
        data_dir: A tau2-bench airline directory; ``None`` falls back to ``$EIGENDSPY_TAU2_DATA``
            and then to the built-in policy and generated DB.
        seed: Seed of the generated DB (built-in mode only).

    Raises:
        DataError: ``data_dir`` lacks a DB file (names the files looked for) or its policy.
    """
    directory = tau2_data.resolve_data_dir("airline", data_dir)
    if directory is None:
        # Only the built-in policy asks for a lookup; tau2's says "The agent must first obtain the
        # user id from the user", which no tool call witnesses, so tau2 mode declares no rule.
        return Domain(
            name="airline",
            db_model=FlightDB,
            tools=tools.AGENT_TOOLS,
            policy=(HERE / "policy.md").read_text(),
            load_db=lambda: generate_db(seed),
            rules=[IdentifyBeforeWrite(identify_with=["get_user_details"], policy=(
                "Ask for the customer's user id and look it up before anything else."))],
        )
    db_file = tau2_data.find_file(directory, *DB_FILES)  # fail now, not at the first episode
    return Domain(
        name="airline",
        db_model=FlightDB,
        tools=tools.AGENT_TOOLS,
        policy=tau2_data.find_file(directory, "policy.md").read_text(),
        load_db=lambda: tau2_data.load_model(db_file, FlightDB),
        load_tasks=lambda: tau2_data.load_task_file(directory, "tasks.json"),
        load_splits=lambda: tau2_data.load_splits(directory),
        data_dir=str(directory),
    )
