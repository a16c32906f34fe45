"""The retail domain: an online store's customer service (orders, returns, exchanges, payments).

Built in: our own policy and a seeded DB generator (`generate_db`), no tasks. With tau2 data
(``data_dir`` pointing at tau2's ``domains/retail``, or ``$EIGENDSPY_TAU2_DATA``) it uses tau2's
``db.json``, ``tasks.json``, ``split_tasks.json`` and ``policy.md``. The tools are the same in
both cases and behave exactly like tau2's.
"""

from __future__ import annotations

from pathlib import Path

from eigendspy.core.domain import Domain
from eigendspy.core.policy_rules import IdentifyBeforeWrite
from eigendspy.domains import tau2_data
from eigendspy.domains.retail import tools
from eigendspy.domains.retail.db import RetailDB
from eigendspy.domains.retail.generator import generate_db

__all__ = ["RetailDB", "generate_db", "load_domain"]

HERE = Path(__file__).parent


def load_domain(data_dir: str | Path | None = None, seed: int = 0) -> Domain:
    """The retail domain, built in or over tau2's data directory.

    Args:
        data_dir: A tau2-bench retail directory; ``None`` falls back to ``$EIGENDSPY_TAU2_DATA``
            and then to the built-in policy and generated DB.
        seed: Seed of the generated DB (built-in mode only).
    """
    directory = tau2_data.resolve_data_dir("retail", data_dir)
    lookups = ["find_user_id_by_email", "find_user_id_by_name_zip"]
    if directory is None:
        return Domain(
            name="retail",
            db_model=RetailDB,
            tools=tools.AGENT_TOOLS,
            policy=(HERE / "policy.md").read_text(),
            load_db=lambda: generate_db(seed),
            rules=[IdentifyBeforeWrite(identify_with=lookups, policy=(
                "Verify the customer before anything else, even if they tell you their user id. Look them up "
                "by email address, or, if they cannot give one or it is not found, by first name, last name "
                "and zip code."))],
        )
    return Domain(
        name="retail",
        db_model=RetailDB,
        tools=tools.AGENT_TOOLS,
        policy=tau2_data.find_file(directory, "policy.md").read_text(),
        load_db=lambda: tau2_data.load_model(tau2_data.find_file(directory, "db.json"), RetailDB),
        load_tasks=lambda: tau2_data.load_task_file(directory, "tasks.json"),
        load_splits=lambda: tau2_data.load_splits(directory),
        data_dir=str(directory),
        # No ordering rule over tau2's data: its gold action lists are the graded minimum and 30 of the
        # 74 train lists write without the lookup its policy asks for; tau2 does not grade the order,
        # so a rule here would reject dialogues tau2 scores 1.0 (the built-in policy keeps the rule).
    )
