"""The telecom domain: mobile-carrier tech support with dual control.

The agent works on the carrier's CRM (customers, lines, plans, bills) through agent tools; the
user works on their own phone (airplane mode, SIM, APN, VPN, apps, payments) through user
tools; a sync hook mirrors the carrier's view of the line onto the user's side after every step.

Built in: our own policy and troubleshooting manual, and a seeded generator of CRM and phone
states (`generator.py`), no tasks. With tau2 data (``data_dir`` pointing at tau2's
``domains/telecom``, or ``$EIGENDSPY_TAU2_DATA``) it uses tau2's ``db.toml``, ``user_db.toml``,
tasks (``tasks.json``, else ``tasks_small.json``), splits, and the policy tau2 composes from
``main_policy.md`` and ``tech_support_manual.md``. The tools are the same in both cases.
"""

from __future__ import annotations

from pathlib import Path

from eigendspy.core.domain import Domain
from eigendspy.core.policy_rules import IdentifyBeforeWrite
from eigendspy.domains import tau2_data
from eigendspy.domains.telecom.agent_functions import AGENT_FUNCTIONS
from eigendspy.domains.telecom.agent_tools import AGENT_TOOLS
from eigendspy.domains.telecom.db import TelecomDB
from eigendspy.domains.telecom.generator import generate_db, generate_user_db
from eigendspy.domains.telecom.sync import sync_telecom
from eigendspy.domains.telecom.user_db import TelecomUserDB
from eigendspy.domains.telecom.user_functions import USER_FUNCTIONS
from eigendspy.domains.telecom.user_tools import USER_TOOLS

__all__ = ["TelecomDB", "TelecomUserDB", "compose_policy", "generate_db", "generate_user_db", "load_domain"]

HERE = Path(__file__).parent


def compose_policy(main_policy: str, tech_support: str) -> str:
    """tau2's telecom agent policy: the main policy and the tech-support manual, each in its tag."""
    return (
        f"<main_policy>\n{main_policy}\n</main_policy>\n<tech_support_policy>\n{tech_support}\n</tech_support_policy>"
    )


def load_domain(data_dir: str | Path | None = None, seed: int = 0) -> Domain:
    """The telecom domain, built in or over tau2's data directory.

    Args:
        data_dir: A tau2-bench telecom directory; ``None`` falls back to ``$EIGENDSPY_TAU2_DATA``
            and then to the built-in policy and generated DBs.
        seed: Seed of the generated DBs (built-in mode only).
    """
    directory = tau2_data.resolve_data_dir("telecom", data_dir)
    common = dict(
        name="telecom",
        db_model=TelecomDB,
        tools=AGENT_TOOLS,
        functions=AGENT_FUNCTIONS,
        user_db_model=TelecomUserDB,
        user_tools=USER_TOOLS,
        user_functions=USER_FUNCTIONS,
        sync=sync_telecom,
    )
    if directory is None:
        # Only the built-in policy makes identification a precondition of every account change; tau2's
        # "You must first identify the customer." heads its technical-support section alone.
        identify = IdentifyBeforeWrite(
            identify_with=["get_customer_by_phone", "get_customer_by_id", "get_customer_by_name"], policy=(
                "Identify the customer: by the phone number they call about, by their customer ID, or by full "
                "name together with date of birth. Do not act on an account you have not found this way."))
        return Domain(
            policy=compose_policy((HERE / "policy.md").read_text(), (HERE / "troubleshooting.md").read_text()),
            load_db=lambda: generate_db(seed),
            load_user_db=lambda: generate_user_db(seed),
            rules=[identify],
            **common,
        )
    policy = compose_policy(
        tau2_data.find_file(directory, "main_policy.md").read_text(),
        tau2_data.find_file(directory, "tech_support_manual.md").read_text(),
    )
    return Domain(
        policy=policy,
        load_db=lambda: tau2_data.load_model(tau2_data.find_file(directory, "db.toml"), TelecomDB),
        load_user_db=lambda: tau2_data.load_model(tau2_data.find_file(directory, "user_db.toml"), TelecomUserDB),
        load_tasks=lambda: tau2_data.load_task_file(directory, "tasks.json", "tasks_small.json"),
        load_splits=lambda: tau2_data.load_splits(directory),
        data_dir=str(directory),
        **common,
    )
