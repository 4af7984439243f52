"""LLM-NET-001: under private data residency the gateway is not open to the world.

Passing::

    requirements: {dataResidency: private}
    network: {ingress: {sources: [10.0.0.0/8]}}

Failing::

    requirements: {dataResidency: private}
    network: {ingress: {sources: [0.0.0.0/0]}}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-NET-001"
SEVERITY = "error"


def _world(source: str) -> bool:
    if source == "internet":
        return True
    try:
        net = ipaddress.IPv4Network(source, strict=False)
    except ValueError:
        return False
    return net.prefixlen == 0 or (net.is_global and net.prefixlen <= 8)


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    if bp.requirements.data_residency != "private":
        return
    for i, source in enumerate(bp.network.ingress.sources):
        if _world(source):
            yield ctx.problem(
                ("network", "ingress", "sources", i),
                f"ingress source {source} opens the gateway to the world under private data "
                "residency; list the internal ranges that may reach it (e.g. 10.0.0.0/8)",
            )
