"""`StageBoard`: the live table a recipe run shows — each stage's state and wall time, and the data engine's
stored records as they land.

Shared by ``eigendspy demo`` and ``benchmarks/bench_recipe.py`` so both show the same progress; it plugs into
`run_recipe`'s ``progress`` and ``on_record`` callbacks (`live_board` wires it to a rich ``Live`` display).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table


class StageBoard:
    """Stage states and timings, plus counts of the engine's accepted/rejected records."""

    def __init__(self, title: str = "recipe") -> None:
        self.title = title
        self.rows: dict[str, list] = {}
        self.records: Counter[str] = Counter()
        self.t0 = time.perf_counter()

    def stage(self, name: str, event: str) -> None:
        """``event``: ``"start"``, ``"done"`` or ``"skip"`` (done by an earlier run of the same folder)."""
        now = time.perf_counter()
        if event == "start":
            self.rows[name] = ["running", now, None]
        elif event == "done":
            self.rows[name] = ["done", self.rows.get(name, [None, now])[1], now]
        else:
            self.rows[name] = ["skipped (done earlier)", now, now]

    def record(self, event: str, accepted: bool) -> None:
        self.records[f"{event} {'accepted' if accepted else 'rejected'}"] += 1

    def table(self) -> Table:
        table = Table("stage", "state", "seconds", title=f"{self.title} ({time.perf_counter() - self.t0:.0f} s)")
        for name, (state, start, end) in self.rows.items():
            seconds = (end if end is not None else time.perf_counter()) - start
            table.add_row(name, state, f"{seconds:.0f}")
        if self.records:
            table.caption = "engine: " + ", ".join(f"{k} {v}" for k, v in sorted(self.records.items()))
        return table


@contextlib.contextmanager
def live_board(console: Console, title: str = "recipe"
               ) -> Iterator[tuple[Callable[[str, str], None], Callable[[str, bool], None]]]:
    """A `StageBoard` shown live; yields the ``(progress, on_record)`` callbacks for `run_recipe`."""
    board = StageBoard(title)
    with Live(board.table(), console=console, refresh_per_second=2) as live:
        def on_stage(name: str, event: str) -> None:
            board.stage(name, event)
            live.update(board.table())

        def on_record(event: str, accepted: bool) -> None:
            board.record(event, accepted)
            live.update(board.table())

        yield on_stage, on_record
