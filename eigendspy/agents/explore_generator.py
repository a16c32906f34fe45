"""Exploring task generation: the task generator as a stock `dspy.ReAct` agent over the domain's read tools.

Why: in sampled mode the generator sees a few rows of the DB (about 1.5k characters, sub-structures
collapsed to markers), so it can only ground a task in ids those rows show — never in an order's items
or a product's variants. Exploring, it follows references the way an agent would (a user's orders ->
an order's items -> a product's variants) and writes tasks whose gold actions chain those lookups.

What keeps it safe and bounded:
- Only tools of kind ``read`` are offered (`read_tool_specs`); each call runs on a fresh, guarded
  `Environment` built for that one generation (``guard_reads=True``: a mislabelled tool's change is
  refused), so exploring can never change the shared DB or another generation's view.
- A call never raises into the agent: the environment turns bad arguments and domain errors into
  ``Error: ...`` observations, and every observation is cut to ``observation_chars``.
- ``max_steps`` bounds the ReAct loop (`dspy.ReAct`'s ``max_iters``); an agent that never calls
  ``finish`` stops there and ReAct's extract step still writes the typed task from what it saw.

What the generator looked up is recorded (`Exploration`) so read paths can be measured.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Literal

import dspy
from pydantic import BaseModel, Field

from eigendspy.core.environment import Environment
from eigendspy.core.messages import ToolCall
from eigendspy.core.tool import ToolKind

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.tool import ToolSpec

EXPLORE_NOTE = (
    "Before writing the task, explore the database with the read tools: start from an id in the entities, "
    "follow the references the results show (e.g. a user's orders, an order's items, a product's variants) "
    "and build the task from values you actually looked up. Every id and value in the gold actions must "
    "come from the entities or from a lookup result; include in the gold actions the lookups an agent needs."
)
"""Appended to the generator's instructions for the ReAct agent (the extract step reads it too)."""

ENTITIES_DESC = "Real database rows (compact JSON) to start exploring from"

_FINISH = "finish"
_ERROR_PREFIXES = ("Error", "Execution error")


class Lookup(BaseModel):
    """One read-tool call the generator made while exploring."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    ok: bool = Field(description="The call returned data (not an error observation)")


class Exploration(BaseModel):
    """What one exploring generation looked up (stored in the task's ``annotations["explore"]``)."""

    lookups: list[Lookup] = Field(default_factory=list)
    steps: int = Field(description="ReAct steps taken (each one a tool call, ``finish`` included)")
    max_steps: int
    stop: Literal["finish", "max_steps", "invalid_step"] = Field(
        description="finish: the agent said it had enough; max_steps: the bound ended it; "
        "invalid_step: ReAct ended it on a step naming no valid tool")

    @property
    def read_path(self) -> tuple[str, ...]:
        """The names of the read tools called, in order (the unit read-path diversity is counted in)."""
        return tuple(lookup.tool for lookup in self.lookups)


def read_tool_specs(domain: Domain) -> list[tuple[str, ToolSpec]]:
    """``(side, spec)`` for every tool of kind ``read``: the agent's, then the user device's (dual control)
    not already named. Generic tools (transfer, calculate) and writes are never offered."""
    seen: set[str] = set()
    out = []
    for side in ("assistant", "user"):
        for spec in domain.toolkit_for(side):
            if spec.kind is ToolKind.READ and spec.name not in seen:
                seen.add(spec.name)
                out.append((side, spec))
    return out


def _tool(spec: ToolSpec, env: Environment | None = None, side: str = "assistant",
          observation_chars: int = 2000) -> dspy.Tool:
    """``spec`` as a `dspy.Tool` running on ``env`` (None: a listing-only tool that answers with an error)."""

    def call(**arguments: Any) -> str:
        if env is None:
            return f"Error: {spec.name} is not bound to a database"
        message = env.execute(ToolCall(name=spec.name, arguments=arguments, requestor=side), side)
        text = message.content or ""
        return text if len(text) <= observation_chars else text[: observation_chars - 1] + "…"

    return dspy.Tool(call, name=spec.name, desc=spec.description,
                     args=dict(spec.parameters_schema.get("properties", {})), arg_types={})


def build_explorer(signature: type[dspy.Signature], domain: Domain, max_steps: int) -> dspy.ReAct:
    """A stock `dspy.ReAct` over ``signature`` with the domain's read tools listed in its instructions and
    step type; their bodies are bound to a database per generation by `bound_explorer`."""
    tools = [_tool(spec) for _, spec in read_tool_specs(domain)]
    return dspy.ReAct(signature, tools=tools, max_iters=max_steps)


def bound_explorer(explorer: dspy.ReAct, domain: Domain, max_steps: int, observation_chars: int) -> dspy.ReAct:
    """A shallow copy of ``explorer`` whose tools run on a fresh, guarded environment of its own.

    The copy shares ``explorer``'s predictors (so evolved instructions, demos, LMs and optimizer traces
    are the persistent ones) but not its tool table: concurrent generations never share a DB view.
    """
    env = Environment.for_task(domain, None, guard_reads=True)
    runner = copy.copy(explorer)
    runner.tools = {**{spec.name: _tool(spec, env, side, observation_chars) for side, spec in read_tool_specs(domain)},
                    _FINISH: explorer.tools[_FINISH]}
    runner.max_iters = max_steps
    return runner


def exploration_of(trajectory: dict[str, Any], max_steps: int) -> Exploration:
    """Read `dspy.ReAct`'s trajectory (``tool_name_i``, ``tool_args_i``, ``observation_i``) into an `Exploration`."""
    lookups, finished, steps = [], False, 0
    while f"tool_name_{steps}" in trajectory:
        name = trajectory[f"tool_name_{steps}"]
        if name == _FINISH:
            finished = True
        else:
            observation = str(trajectory.get(f"observation_{steps}", ""))
            lookups.append(Lookup(tool=name, arguments=dict(trajectory.get(f"tool_args_{steps}") or {}),
                                  ok=not observation.startswith(_ERROR_PREFIXES)))
        steps += 1
    stop = "finish" if finished else ("max_steps" if steps >= max_steps else "invalid_step")
    return Exploration(lookups=lookups, steps=steps, max_steps=max_steps, stop=stop)
