"""LLM-DATA-001: private data residency requires egress to be denied.

Passing::

    requirements: {dataResidency: private}
    network: {egress: deny}

Failing::

    requirements: {dataResidency: private}
    network: {egress: allow}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-DATA-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    if bp.requirements.data_residency == "private" and bp.network.egress != "deny":
        yield ctx.problem(
            ("network", "egress"),
            "dataResidency is private but network.egress is allow; set egress: deny "
            "(list what must be reached in network.egressAllow)",
        )
