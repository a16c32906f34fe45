"""Run (or resume) a scripted-role synthesis in a subprocess, for the kill -9 resume test.

Usage: python tests/engine/engine_script.py RUN_DIR {new|resume} LATENCY_S
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.engine.engine import DataEngine  # noqa: E402
from eigendspy.engine.store.store import RunManifest, RunStore  # noqa: E402
from eigendspy.testing.roles import scripted_roles  # noqa: E402
from tests.engine.test_engine import CONFIG  # noqa: E402


def main() -> None:
    run_dir, mode, latency = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    domain = get_domain("mock", num_users=8, tasks_per_user=5)
    if mode == "new":
        store = RunStore.create(run_dir, RunManifest(config=CONFIG, seed=CONFIG.seed, domain="mock"))
    else:
        store = RunStore.open(run_dir)
    result = asyncio.run(DataEngine(domain, scripted_roles(latency_s=latency), store, CONFIG).run())
    store.close()
    print(f"accepted_dialogues={result.accepted_dialogues}", flush=True)


if __name__ == "__main__":
    main()
