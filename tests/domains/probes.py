"""Replay a tau2 probe oracle (``<domain>/probe_oracle.jsonl``) on an eigendspy domain.

Each sequence runs on a fresh environment: its ``init_actions`` first (as task initialization
actions are run), then every call through ``Environment.execute`` followed by the orchestrator's
end-of-step sync, exactly as tau2's probes were recorded. Compared after every step: the tool
output string, the error flag and the DB hash(es). Errors whose text comes from Python's or
pydantic's argument handling are compared by flag only (their wording is interpreter-specific).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import groupby
from pathlib import Path

from eigendspy.core.domain import Domain
from eigendspy.core.environment import Environment
from eigendspy.core.ids import IdSource
from eigendspy.core.messages import ToolCall
from eigendspy.core.task import EnvFunctionCall

PYTHON_ERROR_MARKERS = (
    "missing 1 required", "missing 2 required", "missing 3 required", "required positional argument",
    "unexpected keyword argument", "validation error", "errors.pydantic.dev", "takes 1 positional",
)


def is_python_error(content: str) -> bool:
    return any(marker in content for marker in PYTHON_ERROR_MARKERS)


def replay_probes(
    domain: Domain,
    path: Path,
    *,
    make_env: Callable[[], Environment] | None = None,
) -> int:
    """Replay every sequence; return the number of calls checked. Fails with the exact location."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    checked = 0
    for seq_id, group in groupby(records, key=lambda r: r["seq_id"]):
        steps = list(group)
        header, calls = steps[0], steps[1:]
        assert header["step"] == -1, seq_id
        env = make_env() if make_env else Environment(domain, ids=IdSource(), tau2_compat=True)
        env.sync()
        for action in header.get("init_actions") or []:
            env.run_function(EnvFunctionCall.model_validate(action))
        assert env.db_hash() == header["db_hash_after"], (seq_id, "initial db hash")
        if "user_db_hash_after" in header:
            assert env.user_db_hash() == header["user_db_hash_after"], (seq_id, "initial user db hash")
        for rec in calls:
            where = (seq_id, rec["step"], rec["name"], rec["arguments"])
            msg = env.execute(ToolCall(id=f"p{rec['step']}", name=rec["name"], arguments=rec["arguments"],
                                       requestor=rec["requestor"]), rec["requestor"])
            env.sync()
            assert msg.error == rec["error"], (where, msg.content, rec["content"])
            if not (rec["error"] and is_python_error(rec["content"])):
                assert msg.content == rec["content"], where
            assert env.db_hash() == rec["db_hash_after"], (where, "db hash")
            if "user_db_hash_after" in rec:
                assert env.user_db_hash() == rec["user_db_hash_after"], (where, "user db hash")
            checked += 1
    return checked
