"""The dataset card of an export: counts, yields and diversity numbers, rendered as a Hugging Face README."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DatasetCard", "StageYield"]


class StageYield(BaseModel):
    """How many items a stage accepted out of how many it saw."""

    accepted: int
    total: int

    @property
    def rate(self) -> float | None:
        return self.accepted / self.total if self.total else None


class DatasetCard(BaseModel):
    """What an export contains and how it was made: the numbers a reader needs to trust the data.

    ``yields`` come from the engine's summary (per stage); the record counts and
    ``rejected_by_stage`` are computed from the records themselves, so the card is right even
    without a summary. Diversity numbers are the engine's (DESIGN.md: every run reports them).
    """

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = None
    domains: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict, description="rows per exported dataset")
    tasks_total: int = 0
    tasks_accepted: int = 0
    dialogues_total: int = 0
    dialogues_accepted: int = 0
    rejected_by_stage: dict[str, int] = Field(default_factory=dict)
    skipped_malformed: int = Field(0, description="accepted dialogues left out: tool-call arguments not a JSON object")
    rejected_at_export: dict[str, int] = Field(default_factory=dict, description=(
        "accepted dialogues the export's pre-checks left out, per finding kind (each counted once, under its first)"))
    yields: dict[str, StageYield] = Field(default_factory=dict)
    plan_cells_covered: int | None = None
    gold_action_jaccard: float | None = None
    mean_reward: float | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_markdown(self) -> str:
        """A Hugging Face dataset README (YAML header + tables)."""
        def pct(a: int, t: int) -> str:
            return f"{a}/{t} ({a / t:.1%})" if t else f"{a}/{t}"

        lines = ["---", "tags:", "- eigendspy", "- tool-use", "- synthetic", "- tau2-bench", "---", "",
                 f"# eigendspy export{f' of run `{self.run_id}`' if self.run_id else ''}", "",
                 f"Domains: {', '.join(self.domains) or '-'}", "", "| dataset | rows |", "| --- | --- |"]
        lines += [f"| {name} | {n} |" for name, n in self.counts.items()]
        lines += ["", "## Yield", "", "| what | accepted / total |", "| --- | --- |",
                  f"| tasks | {pct(self.tasks_accepted, self.tasks_total)} |",
                  f"| dialogues | {pct(self.dialogues_accepted, self.dialogues_total)} |"]
        lines += [f"| stage `{stage}` | {pct(y.accepted, y.total)} |" for stage, y in self.yields.items()]
        if self.rejected_by_stage:
            lines += ["", "Rejected by stage: " + ", ".join(f"`{s}` {n}" for s, n in self.rejected_by_stage.items())]
        if self.skipped_malformed:
            lines += ["", f"Accepted dialogues skipped (malformed tool-call arguments): {self.skipped_malformed}"]
        if self.rejected_at_export:
            kinds = ", ".join(f"`{kind}` {n}" for kind, n in sorted(self.rejected_at_export.items()))
            lines += ["", f"Accepted dialogues left out at export by the dialogue pre-checks: "
                          f"{sum(self.rejected_at_export.values())} ({kinds})"]
        lines += ["", "## Diversity", "",
                  f"- plan cells covered: {'-' if self.plan_cells_covered is None else self.plan_cells_covered}",
                  f"- gold-action Jaccard between tasks: "
                  f"{'-' if self.gold_action_jaccard is None else f'{self.gold_action_jaccard:.3f}'}",
                  f"- mean reward of exported dialogues: "
                  f"{'-' if self.mean_reward is None else f'{self.mean_reward:.3f}'}"]
        if self.extra:
            lines += ["", "## Run details", "", "```json", json.dumps(self.extra, indent=2, default=str), "```"]
        lines += ["", "## Format", "",
                  "Saved with `datasets.Dataset.save_to_disk`; load with `datasets.load_from_disk(path)`.",
                  "`sft_agent` / `sft_user` are TRL conversational rows (`messages`, `tools`); tool-call",
                  "`arguments` are JSON objects (dicts), as the Qwen2.5 chat templates expect. `rl_tasks` keeps each",
                  "task as tau2 JSON in `task_json`.", ""]
        return "\n".join(lines)
