"""Which roles a round recompiles: those with the largest share of the round's rejections.

Why shares and not raw counts: the loop's budget is spent where most of the round's data was lost.
A share is the role's attributed failures over the round's rejected items (a dialogue can count for
two roles — e.g. the assistant failed and the trajectory validator passed it anyway — so shares may
sum past 1). Ties go to the earlier role in the pipeline, whose failures also hide later ones' (a
rejected task is never rolled out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eigendspy.optimizers.loop.config import PIPELINE_ORDER

__all__ = ["rejection_shares", "select_roles"]


def rejection_shares(counts: Mapping[str, int], rejections: int) -> dict[str, float]:
    """Role -> attributed failures / rejected items (0 for every role when nothing was rejected)."""
    return {role: round(counts.get(role, 0) / rejections, 4) if rejections else 0.0 for role in PIPELINE_ORDER}


def select_roles(shares: Mapping[str, float], eligible: Iterable[str], top_k: int,
                 trainable: Iterable[str] | None = None) -> list[str]:
    """The ``top_k`` eligible roles with a positive share, largest first, returned in pipeline order.

    Args:
        shares: `rejection_shares` of the round.
        eligible: Roles the loop may recompile.
        top_k: How many at most.
        trainable: Roles that have examples to learn from (default: all eligible).
    """
    allowed = set(eligible) & (set(trainable) if trainable is not None else set(eligible))
    ranked = sorted((r for r in PIPELINE_ORDER if r in allowed and shares.get(r, 0.0) > 0),
                    key=lambda r: (-shares[r], PIPELINE_ORDER.index(r)))
    chosen = set(ranked[:top_k])
    return [r for r in PIPELINE_ORDER if r in chosen]
