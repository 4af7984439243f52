"""LLM-TGT-001: the target named 'local' is of type local.

Every verb defaults to the target 'local'; naming a cluster 'local' would send an unsuspecting
``llmctl up`` to it.

Passing::

    targets: {local: {type: local}, prod: {type: kubernetes, namespace: hr}}

Failing::

    targets: {local: {type: kubernetes, namespace: hr}}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-TGT-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    local = ctx.bp.targets.get("local")
    if local is not None and local.type != "local":
        yield ctx.problem(
            ("targets", "local", "type"),
            "the target named 'local' must have type: local; give the cluster another name",
        )
