"""LLM-CIT-001: required citations need retrieval with at least one document source.

Passing::

    requirements: {citations: required}
    retrieval: {sources: [{name: policies, path: corpora/policies}]}

Failing::

    requirements: {citations: required}
    retrieval: {enabled: false}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-CIT-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    if bp.requirements.citations != "required":
        return
    if not bp.retrieval.enabled:
        yield ctx.problem(
            ("retrieval", "enabled"),
            "citations are required but retrieval is disabled; enable retrieval and declare sources",
        )
    elif not bp.retrieval.sources:
        yield ctx.problem(
            ("retrieval",),
            "citations are required but retrieval has no sources; add retrieval.sources",
        )
