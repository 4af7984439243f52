"""LLM-ACL-001: confidential and restricted sources must declare who may read them.

Access-control metadata lost during ingestion is how RAG permission leaks begin (seed 000): a
sensitive source needs a default ACL, and must not be configured to ignore per-document ACLs
without one.

Passing::

    retrieval:
      sources: [{name: hr, path: docs/hr, sensitivity: confidential, acl: [hr-admins]}]

Failing::

    retrieval:
      sources: [{name: hr, path: docs/hr, sensitivity: confidential}]
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-ACL-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    for i, source in enumerate(ctx.bp.retrieval.sources):
        if source.sensitive and not source.acl:
            yield ctx.problem(
                ("retrieval", "sources", i),
                f"source '{source.name}' is {source.sensitivity} but declares no acl; "
                "add acl: [groups that may read it]",
            )
