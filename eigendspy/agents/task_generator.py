"""The task generator: one executable task (scenario, gold actions, checks) from a plan and real rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import dspy
import pydantic

from eigendspy.agents.synthesis_inputs import all_tool_names, render_feedback, tool_summary
from eigendspy.plans import PlanPair
from eigendspy.signatures.task_generator import ActionDraft, GenerateTask, TaskDraft
from eigendspy.task import (
    DEFAULT_REWARD_BASIS,
    Action,
    Description,
    EvaluationCriteria,
    StatePredicate,
    StructuredUserInstructions,
    Task,
    UserScenario,
)

if TYPE_CHECKING:
    from eigendspy.domain import Domain


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
                              arguments=dict(step.arguments)))
    if reasons:
        raise DraftError(reasons)
    basis = list(dict.fromkeys(draft.reward_basis)) or list(DEFAULT_REWARD_BASIS)
    predicates = [StatePredicate(expression=e) for e in draft.state_predicates if e.strip()] or None
    return Task(
        id=task_id,
        description=Description(purpose=plan.synthesis.intent_family, notes=f"plan {plan.plan_id}") if plan else None,
        user_scenario=UserScenario(
            persona=draft.persona or None,
            instructions=StructuredUserInstructions(
                domain=domain.name,
                reason_for_call=draft.reason_for_call,
                known_info=draft.known_info or None,
                unknown_info=draft.unknown_info or None,
                task_instructions=draft.task_instructions,
            ),
        ),
        evaluation_criteria=EvaluationCriteria(
            actions=actions,
            communicate_info=[c for c in draft.communicate_info if c.strip()],
            reward_basis=basis,
            state_predicates=predicates,
        ),
    )


class TaskGenerator(dspy.Module):
    """Writes one task for a plan from real DB rows; the task carries its own checker criteria.

    The LM writes a `TaskDraft`; the module turns it into an `eigendspy.task.Task` and raises
    `DraftError` (a ``ValueError`` with ``reasons``) when a gold action names a tool the domain
    lacks or the plan does not allow — the engine feeds those reasons back as ``feedback``.
    Whether the task *executes* is `eigendspy.task_checks.execution_check`'s job.

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.

    Example:
        ```python
        gen = TaskGenerator(lm=dspy.LM("openai/gpt-4o-mini"))
        entities = sample_entities(domain, random.Random(0))
        pred = gen(domain=domain, plan=plans[0], entities=entities, task_id="p0_0_t0")
        pred.task  # eigendspy.task.Task
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, constrain_tools: bool = False) -> None:
        super().__init__()
        self.constrain_tools = constrain_tools
        self.generate = dspy.Predict(GenerateTask)
        if lm is not None:
            self.generate.set_lm(lm)

    @staticmethod
    def _inputs(domain: Domain, plan: PlanPair | str, entities: str, feedback: str | Sequence[str],
                allowed_tools: Sequence[str] | None) -> dict[str, object]:
        return {
            "domain": domain.name,
            "policy": domain.policy,
            "tools": tool_summary(domain),
            "allowed_tools": list(allowed_tools) if allowed_tools is not None else all_tool_names(domain),
            "plan": plan.render() if isinstance(plan, PlanPair) else plan,
            "entities": entities,
            "feedback": render_feedback(feedback),
        }

    @staticmethod
    def _result(raw: dspy.Prediction, domain: Domain, plan: PlanPair | str, task_id: str,
                allowed_tools: Sequence[str] | None) -> dspy.Prediction:
        draft = raw.task
        task = draft_to_task(draft, domain, task_id, allowed_tools=allowed_tools,
                             plan=plan if isinstance(plan, PlanPair) else None)
        return dspy.Prediction(task=task, draft=draft)

    def _predictor(self, tool_names: Sequence[str]) -> dspy.Predict:
        """With ``constrain_tools``, the predictor's ``task`` output is typed for this domain: action
        names are an enum of the allowed tools, so a grammar-constrained decoder (the embedded model)
        cannot invent one. Off by default: a capable LM gets a repairable reason instead of a parse
        error. A copy of ``self.generate`` keeps the evolved instructions, demos and LM."""
        names = tuple(sorted(set(tool_names)))
        if not self.constrain_tools or not names:
            return self.generate
        action = pydantic.create_model("ActionDraft", __base__=ActionDraft, name=(Literal[names], ...))
        draft = pydantic.create_model("TaskDraft", __base__=TaskDraft, actions=(list[action], ...))
        predictor = self.generate.deepcopy()
        predictor.signature = self.generate.signature.with_updated_fields("task", type_=draft)
        return predictor

    def forward(
        self,
        domain: Domain,
        plan: PlanPair | str,
        entities: str,
        task_id: str,
        feedback: str | Sequence[str] = "",
        allowed_tools: Sequence[str] | None = None,
    ) -> dspy.Prediction:
        """Returns ``Prediction(task: Task, draft: TaskDraft)``; raises `DraftError`."""
        inputs = self._inputs(domain, plan, entities, feedback, allowed_tools)
        raw = self._predictor(inputs["allowed_tools"])(**inputs)
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
        raw = await self._predictor(inputs["allowed_tools"]).acall(**inputs)
        return self._result(raw, domain, plan, task_id, allowed_tools)
