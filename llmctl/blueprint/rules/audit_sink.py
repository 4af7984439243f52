"""LLM-AUDIT-001: a required audit trail needs a sink and a retention period.

Passing::

    requirements: {audit: {required: true, sink: file://audit/audit.jsonl, retentionDays: 2555}}

Failing::

    requirements: {audit: {required: true}}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-AUDIT-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    audit = ctx.bp.requirements.audit
    if not audit.required:
        return
    missing = [
        name
        for name, value in (("sink", audit.sink), ("retentionDays", audit.retention_days))
        if value is None
    ]
    if missing:
        yield ctx.problem(
            ("requirements", "audit"),
            f"audit is required but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not set; add e.g. sink: file://audit/audit.jsonl and retentionDays: 365",
        )
