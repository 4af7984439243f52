"""LLM-DATA-002: private data residency forbids an external model endpoint.

Passing::

    requirements: {dataResidency: private}
    model: {id: meta-llama/Llama-3.1-8B-Instruct}

Failing::

    requirements: {dataResidency: private}
    model: {id: gpt-4o, endpoint: https://api.openai.com/v1}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-DATA-002"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    if bp.requirements.data_residency == "private" and bp.model.endpoint:
        yield ctx.problem(
            ("model", "endpoint"),
            f"dataResidency is private but the model is served by an external endpoint "
            f"({bp.model.endpoint}); remove model.endpoint to self-host the model",
        )
