"""citations: with ``citations: required``, every answer this run got back carries a citation.

An answer without a source cannot be checked by its reader, so one bare answer fails the
requirement; a run with no answer at all fails it too (nothing was shown to hold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance.base import RequirementContext
from llmctl.gates.results import Check

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

REQUIREMENT = "citations"


def applies(ctx: RequirementContext) -> bool:
    return ctx.bp.requirements.citations == "required"


def check(ctx: RequirementContext) -> list[Check]:
    return check_citations(ctx.bp, ctx.responses)


def check_citations(bp: Blueprint, responses: Sequence[dict[str, Any]]) -> list[Check]:
    """``citations.every-answer-cited`` over the responses with outcome ``answered``."""
    answered = [r for r in responses if r.get("outcome") == "answered"]
    bare = [r.get("request_id") or "?" for r in answered if not r.get("citations")]
    ok = bool(answered) and not bare
    if not answered:
        msg = "no answered request in this run to inspect"
    elif bare:
        msg = f"{len(bare)} of {len(answered)} answers carried no citation (request ids {', '.join(bare[:5])})"
    else:
        msg = f"all {len(answered)} answers carried citations"
    return [
        Check(
            "citations.every-answer-cited",
            ok,
            msg,
            value=len(bare),
            threshold=0,
            evidence="citations required: responses of this run (outcome answered)",
        )
    ]
