"""The task generator: one executable task (scenario, gold actions, checks) from a plan and real rows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import dspy
import pydantic

from eigendspy.agents.explore_generator import (
    ENTITIES_DESC,
    EXPLORE_NOTE,
    Exploration,
    bound_explorer,
    build_explorer,
    exploration_of,
    read_tool_specs,
)
from eigendspy.agents.synthesis_inputs import all_tool_names, render_feedback, tool_summary
from eigendspy.core.plans import PlanPair
from eigendspy.core.task import (
    DEFAULT_REWARD_BASIS,
    Action,
    Description,
    EvaluationCriteria,
    StatePredicate,
    StructuredUserInstructions,
    Task,
    UserScenario,
)
from eigendspy.lm.small_model import call_arguments, tool_call_union, values_from_text, write_specs
from eigendspy.signatures.task_generator import ActionDraft, GenerateTask, TaskDraft

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.tool import ToolSpec


class DraftError(ValueError):
    """A drafted task cannot become a `Task`; ``reasons`` go back to the generator as feedback."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(self.reasons))


def draft_to_task(
    draft: TaskDraft,
    domain: Domain,
    task_id: str,
    *,
    allowed_tools: Sequence[str] | None = None,
    plan: PlanPair | None = None,
) -> Task:
    """Build the `Task` a draft describes, or raise `DraftError` naming every bad action.

    Each action's requestor is the side whose toolkit has the tool (the agent's first; a tool
    only the user has is a user-device action). Action ids are ``"{task_id}_{i}"``.
    """
    allowed = set(allowed_tools) if allowed_tools is not None else None
    reasons = []
    actions = []
    for i, step in enumerate(draft.actions):
        if step.name in domain.toolkit:
            requestor = "assistant"
        elif step.name in domain.user_toolkit:
            requestor = "user"
        else:
            known = ", ".join(all_tool_names(domain))
            reasons.append(f"gold action #{i} uses unknown tool {step.name!r} (known tools: {known})")
            continue
        if allowed is not None and step.name not in allowed:
            reasons.append(f"gold action #{i} uses tool {step.name!r}, which this plan does not allow")
            continue
        actions.append(Action(action_id=f"{task_id}_{i}", requestor=requestor, name=step.name,
                              arguments=call_arguments(step)))
    if reasons:
        raise DraftError(reasons)
    # A small-model draft (`small_task_draft`) has no basis, predicates or communicate_info: defaults.
    basis = list(dict.fromkeys(getattr(draft, "reward_basis", None) or [])) or list(DEFAULT_REWARD_BASIS)
    predicates = [StatePredicate(expression=e) for e in getattr(draft, "state_predicates", []) if e.strip()] or None
    return Task(
        id=task_id,
        description=Description(purpose=plan.synthesis.intent_family, notes=f"plan {plan.plan_id}") if plan else None,
        user_scenario=UserScenario(
            persona=draft.persona or None,
            instructions=StructuredUserInstructions(
                domain=domain.name,
                reason_for_call=draft.reason_for_call,
                known_info=draft.known_info or None,
                unknown_info=getattr(draft, "unknown_info", "") or None,
                task_instructions=draft.task_instructions,
            ),
        ),
        evaluation_criteria=EvaluationCriteria(
            actions=actions,
            communicate_info=[c for c in getattr(draft, "communicate_info", []) if c.strip()],
            reward_basis=basis,
            state_predicates=predicates,
        ),
    )


class TaskGenerator(dspy.Module):
    """Writes one task for a plan from real DB rows; the task carries its own checker criteria.

    The LM writes a `TaskDraft`; the module turns it into an `eigendspy.core.task.Task` and raises
    `DraftError` (a ``ValueError`` with ``reasons``) when a gold action names a tool the domain
    lacks or the plan does not allow — the engine feeds those reasons back as ``feedback``.
    Whether the task *executes* is `eigendspy.scoring.execution.execution_check`'s job.

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.
        constrain_tools: Type action names as an enum of the allowed tools (see `_signature`).
        small_model: Small-model mode (`eigendspy.lm.small_model`): the model picks one call of an
            allowed *write* tool, typed per tool (required arguments only, ids from an enum of the
            sampled rows, enum values that change the row) and a persona; the rest of the scenario
            is stated from that call; reward basis, predicates and communicate_info are the defaults.
        explore: Exploring mode (`eigendspy.agents.explore_generator`): the generator is a stock
            `dspy.ReAct` agent over the domain's read tools (on a fresh, guarded copy of the DB per
            call), starting from the sampled ``entities``, and ReAct's extract step writes the typed
            task. The prediction then also carries ``exploration`` (the lookups made), which is stored
            in ``task.annotations["explore"]``. Not combinable with ``small_model``; ``constrain_tools``
            does not apply to it (a bad tool name still comes back as a `DraftError`).
        max_explore_steps: The bound on ReAct steps in exploring mode (``finish`` counts as one).
        observation_chars: Each lookup result is cut to this many characters.

    Example:
        ```python
        gen = TaskGenerator(lm=dspy.LM("openai/gpt-4o-mini"))
        entities = sample_entities(domain, random.Random(0))
        pred = gen(domain=domain, plan=plans[0], entities=entities, task_id="p0_0_t0")
        pred.task  # eigendspy.core.task.Task
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, constrain_tools: bool = False, small_model: bool = False,
                 explore: bool = False, max_explore_steps: int = 6, observation_chars: int = 2000) -> None:
        super().__init__()
        if max_explore_steps < 1 or observation_chars < 1:
            raise ValueError("max_explore_steps and observation_chars must be >= 1")
        self.constrain_tools = constrain_tools
        self.small_model = small_model
        self.explore = explore
        self.max_explore_steps = max_explore_steps
        self.observation_chars = observation_chars
        self.generate = dspy.Predict(GenerateTask)
        self.explorer: dspy.ReAct | None = None  # built on the first exploring call: its tools are the domain's
        self._explorer_key: tuple[str, ...] = ()
        self._explorer_state: dict[str, Any] = {}  # a loaded explorer's state, for the explorer built later
        if lm is not None:
            self.generate.set_lm(lm)

    def _inputs(self, domain: Domain, plan: PlanPair | str, entities: str, feedback: str | Sequence[str],
                allowed_tools: Sequence[str] | None) -> dict[str, object]:
        """The keyword arguments of the one predictor call, shared by `forward` and `aforward`: the
        signature for this call (see `_signature`) and the inputs."""
        if self.explore and self.small_model:
            raise ValueError("TaskGenerator: explore and small_model cannot be combined (the small-model "
                             "output is typed per call; the ReAct agent's is the generator's own)")
        allowed = list(allowed_tools) if allowed_tools is not None else all_tool_names(domain)
        if self.small_model:
            allowed = [spec.name for spec in write_specs(list(domain.toolkit), allowed)]
        return {
            "signature": self._signature(allowed, domain, entities),
            "domain": domain.name,
            "policy": domain.policy,
            "tools": tool_summary(domain),
            "allowed_tools": allowed,
            "plan": plan.render() if isinstance(plan, PlanPair) else plan,
            "entities": entities,
            "feedback": render_feedback(feedback),
        }

    def _result(self, raw: dspy.Prediction, domain: Domain, plan: PlanPair | str, task_id: str,
                allowed_tools: Sequence[str] | None) -> dspy.Prediction:
        draft = raw.task
        if self.small_model:
            draft = _small_scenario(draft, domain)
        exploration = exploration_of(raw.trajectory, self.max_explore_steps) if self.explore else None
        try:
            task = draft_to_task(draft, domain, task_id, allowed_tools=allowed_tools,
                                 plan=plan if isinstance(plan, PlanPair) else None)
        except DraftError as exc:
            if exploration is not None:  # what was looked up helps the repair: say how exploring ended
                exc.reasons.append(_exploration_note(exploration))
            raise
        if exploration is None:
            return dspy.Prediction(task=task, draft=draft)
        task.annotations = {**(task.annotations or {}), "explore": exploration.model_dump(mode="json")}
        return dspy.Prediction(task=task, draft=draft, exploration=exploration)

    def _explorer(self, domain: Domain) -> dspy.ReAct:
        """This call's ReAct agent: the persistent one (built on first use, rebuilt for another tool set)
        with its tools bound to a fresh, guarded environment of ``domain``."""
        key = (domain.name, *(spec.name for _, spec in read_tool_specs(domain)))
        if self.explorer is None or key != self._explorer_key:
            signature = (self.generate.signature.with_instructions(
                f"{self.generate.signature.instructions.rstrip()}\n\n{EXPLORE_NOTE}")
                .with_updated_fields("entities", desc=ENTITIES_DESC))
            self.explorer = build_explorer(signature, domain, self.max_explore_steps)
            for name, predictor in self.explorer.named_predictors():
                if f"explorer.{name}" in self._explorer_state:
                    predictor.load_state(self._explorer_state[f"explorer.{name}"])
            if self.generate.lm is not None:
                self.explorer.set_lm(self.generate.lm)
            self._explorer_key = key
        return bound_explorer(self.explorer, domain, self.max_explore_steps, self.observation_chars)

    def _signature(self, tool_names: Sequence[str], domain: Domain | None = None,
                   entities: str = "") -> type[dspy.Signature]:
        """The signature ``self.generate`` is called with: with ``constrain_tools`` its ``task`` output is
        typed for this domain — action names are an enum of the allowed tools, so a grammar-constrained
        decoder (the embedded model) cannot invent one. Off by default: a capable LM gets a repairable
        reason instead of a parse error. In small-model mode the whole draft is typed per call
        (`small_task_draft`).

        Derived from ``self.generate.signature`` at call time, so evolved instructions are kept, and
        passed to ``self.generate`` itself (never a copy), so optimizers' traces see the call."""
        names = tuple(sorted(set(tool_names)))
        if self.small_model and domain is not None:
            specs = [spec for spec in domain.toolkit if spec.name in names]
            draft = small_task_draft(specs, entities)
            if draft is None:
                raise DraftError([f"none of the write tools ({', '.join(names) or 'none allowed'}) can be filled "
                                  "from the sampled entities: their ids are not among the rows shown"])
        elif not self.constrain_tools or not names:
            return self.generate.signature
        else:
            action = pydantic.create_model("ActionDraft", __base__=ActionDraft, name=(Literal[names], ...))
            draft = pydantic.create_model("TaskDraft", __base__=TaskDraft, actions=(list[action], ...))
        return self.generate.signature.with_updated_fields("task", type_=draft)

    def load_state(self, state: dict[str, Any], **kwargs: Any) -> None:
        """DSPy's ``load_state``, keeping a saved explorer's state (instructions, demos) for the explorer the
        next exploring call builds: before that call this module has no explorer to load it into."""
        self._explorer_state = {k: v for k, v in state.items() if k.startswith("explorer.")}
        super().load_state(state, **kwargs)

    def forward(
        self,
        domain: Domain,
        plan: PlanPair | str,
        entities: str,
        task_id: str,
        feedback: str | Sequence[str] = "",
        allowed_tools: Sequence[str] | None = None,
    ) -> dspy.Prediction:
        """Returns ``Prediction(task: Task, draft: TaskDraft)`` (exploring: also ``exploration``); raises
        `DraftError`."""
        inputs = self._inputs(domain, plan, entities, feedback, allowed_tools)
        if self.explore:
            inputs.pop("signature")
            raw = self._explorer(domain)(**inputs)
        else:
            raw = self.generate(**inputs)
        return self._result(raw, domain, plan, task_id, allowed_tools)

    async def aforward(
        self,
        domain: Domain,
        plan: PlanPair | str,
        entities: str,
        task_id: str,
        feedback: str | Sequence[str] = "",
        allowed_tools: Sequence[str] | None = None,
    ) -> dspy.Prediction:
        inputs = self._inputs(domain, plan, entities, feedback, allowed_tools)
        if self.explore:
            inputs.pop("signature")
            raw = await self._explorer(domain).acall(**inputs)
        else:
            raw = await self.generate.acall(**inputs)
        return self._result(raw, domain, plan, task_id, allowed_tools)


def _exploration_note(exploration: Exploration) -> str:
    path = " -> ".join(exploration.read_path) or "no lookups"
    return f"(exploration: {path}; ended by {exploration.stop} after {exploration.steps} step(s))"


_SMALL_TEXT = 120  # characters of the persona in small-model mode
_SMALL_INSTRUCTIONS = "Answer briefly, and end the chat once it is done."


def small_task_draft(specs: Sequence[ToolSpec], entities: str) -> type[pydantic.BaseModel] | None:
    """The small-model draft type for one call: one gold action — a call of one of ``specs`` with its
    required arguments, ids from the rows in ``entities`` and enum values that change the row
    (`eigendspy.lm.small_model.tool_call_union`) — and a short persona. One action because each further
    one is another chance for the small model to be wrong in rollouts too; the rest of the scenario
    is stated from the action (`_small_scenario`), since a small model's free text need not match the
    action it chose (docs/embedded_model.md). None when no tool can be grounded in those rows."""
    union = tool_call_union(specs, values_from_text(entities), avoid_no_op=True)
    if union is None:
        return None
    persona = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=_SMALL_TEXT)]
    actions = Annotated[list[union], pydantic.Field(min_length=1, max_length=1,  # type: ignore[valid-type]
                                                     description="The one state-changing tool call")]
    return pydantic.create_model(
        "TaskDraft", __config__=pydantic.ConfigDict(extra="forbid"), actions=(actions, ...),
        persona=(persona, pydantic.Field(..., description=TaskDraft.model_fields["persona"].description)),
    )


def _small_scenario(draft: pydantic.BaseModel, domain: Domain) -> TaskDraft:
    """A full `TaskDraft` from a small-model draft: the reason for calling and the known info say
    what the gold action does and with which values, so the simulated user can ask for exactly it
    (it can only give the agent what its scenario holds)."""
    steps = [ActionDraft(name=step.name, arguments=call_arguments(step)) for step in draft.actions]
    wants, facts = [], []
    for step in steps:
        spec = domain.toolkit.tools.get(step.name)
        what = ((spec.description if spec else "") or step.name.replace("_", " ")).split("\n")[0].rstrip(".")
        details = ", ".join(f"{k} {json.dumps(v, ensure_ascii=False)}" for k, v in step.arguments.items())
        wants.append(f"{what[:1].lower()}{what[1:]}" + (f" ({details})" if details else ""))
        facts += [f"{k}: {v}" for k, v in step.arguments.items()]
    return TaskDraft(
        persona=draft.persona,
        reason_for_call="You want the agent to " + "; then ".join(wants) + ".",
        known_info="; ".join(dict.fromkeys(facts)),
        task_instructions=_SMALL_INSTRUCTIONS,
        actions=steps,
        communicate_info=[],
    )
