"""LLM-CAP-001: replicas.min is not larger than replicas.max.

Passing::

    capacity: {replicas: {min: 2, max: 6}}

Failing::

    capacity: {replicas: {min: 4, max: 2}}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-CAP-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    replicas = ctx.bp.capacity.replicas
    if replicas.min > replicas.max:
        yield ctx.problem(
            ("capacity", "replicas", "min"),
            f"replicas.min {replicas.min} is larger than replicas.max {replicas.max}; "
            "raise max or lower min",
        )
