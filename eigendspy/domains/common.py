"""Tools shared by several built-in domains (same name, schema and output everywhere in tau2)."""

from __future__ import annotations

from typing import Any

from eigendspy.core.domain import ToolError, tool
from eigendspy.domains.calculator import CalculationError, calculate_text


@tool(kind="generic")
def transfer_to_human_agents(db: Any, summary: str) -> str:
    """Transfer the user to a human agent, with a summary of the user's issue.

    Only transfer if
     -  the user explicitly asks for a human agent
     -  given the policy and the available tools, you cannot solve the user's issue.

    Args:
        summary: A summary of the user's issue.

    Returns:
        A message indicating the user has been transferred to a human agent.
    """
    return "Transfer successful"


@tool(kind="generic")
def calculate(db: Any, expression: str) -> str:
    """Calculate the result of a mathematical expression.

    Args:
        expression: The mathematical expression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *, /), parentheses, and spaces.

    Returns:
        The result of the mathematical expression.
    """  # noqa: E501
    try:
        return calculate_text(expression)
    except CalculationError as exc:
        raise ToolError(str(exc)) from exc
