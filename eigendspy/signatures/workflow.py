"""Signature of the workflow proposer: bounded engine-setting changes from a round's failure statistics."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field


class KnobProposal(BaseModel):
    """One proposed setting: which knob, its new value, and the statistic that calls for it."""

    knob: str = Field(description="One of the knobs listed in the bounds")
    new: float = Field(description="The new value, inside the knob's bounds")
    reason: str = Field(description="The failure statistic that motivates the change")


class ProposeWorkflow(dspy.Signature):
    """You tune a synthetic-data engine between rounds. From the round's failure statistics, propose at
    most a few setting changes that would raise the share of accepted dialogues next round. Every value
    must stay inside its bounds; propose nothing when no statistic calls for a change."""

    failure_stats: str = dspy.InputField(desc="The round's failure statistics (JSON)")
    settings: str = dspy.InputField(desc="The current value of every knob (JSON)")
    bounds: str = dspy.InputField(desc="Inclusive [lo, hi] of every knob (JSON)")
    changes: list[KnobProposal] = dspy.OutputField(desc="Proposed changes (may be empty)")
    rationale: str = dspy.OutputField(desc="One or two sentences on why")
