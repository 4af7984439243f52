"""The compliance gate: every requirement of the blueprint mapped to the evidence that checks it.

Evidence is what the verify run observed, never what the configuration claims:

- the responses the gateway actually sent (``responses.jsonl`` in the evidence folder, one line
  per request this run made: request id, asker, groups, outcome, cited document ids);
- the gateway's own audit JSONL (and its rotated files);
- the sockets each local component is listening on (``/proc``), and the rendered Kubernetes
  NetworkPolicies where the blueprint has a kubernetes target;
- the load gate's figures.

Checks read files, so a test (or an auditor) can tamper with the recorded evidence between the
run and the check and see the matching requirement fail.

One module per requirement, registered here in the order the report lists them; each has
``REQUIREMENT`` (its checks' name prefix), ``applies(ctx)`` and ``check(ctx)`` (see ``base``).
Tests run every requirement against ``tests/fixtures/compliance/<REQUIREMENT>/{pass,fail}/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance import access_control, audit, citations, residency, slo
from llmctl.gates.compliance.access_control import check_access
from llmctl.gates.compliance.audit import AUDIT_FIELDS, AUDIT_NON_EMPTY, check_audit
from llmctl.gates.compliance.base import Requirement, RequirementContext
from llmctl.gates.compliance.citations import check_citations
from llmctl.gates.compliance.evidence import (
    Evidence,
    load_evidence,
    read_audit,
    read_jsonl,
    save_evidence,
    write_responses,
)
from llmctl.gates.compliance.residency import check_residency, egress_denied
from llmctl.gates.compliance.slo import check_slos
from llmctl.gates.compliance.sockets import is_loopback, listening_sockets
from llmctl.gates.results import Check, GateResult

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

__all__ = [
    "AUDIT_FIELDS",
    "AUDIT_NON_EMPTY",
    "REQUIREMENTS",
    "Evidence",
    "Requirement",
    "RequirementContext",
    "check_access",
    "check_audit",
    "check_citations",
    "check_compliance",
    "check_residency",
    "check_slos",
    "egress_denied",
    "is_loopback",
    "listening_sockets",
    "load_evidence",
    "read_audit",
    "read_jsonl",
    "requirement_context",
    "save_evidence",
    "write_responses",
]

_MODULES = (residency, citations, audit, access_control, slo)

REQUIREMENTS: tuple[Requirement, ...] = tuple(
    Requirement(
        id=m.REQUIREMENT,
        applies=m.applies,
        check=m.check,
        summary=(m.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1],
    )
    for m in _MODULES
)


def requirement_context(bp: Blueprint, target: Any, ev: Evidence) -> RequirementContext:
    """What every requirement check reads; the responses file is read once, here."""
    responses = read_jsonl(ev.responses_file) if ev.responses_file.is_file() else []
    return RequirementContext(bp=bp, target=target, evidence=ev, responses=responses)


def check_compliance(bp: Blueprint, target: Any, ev: Evidence) -> GateResult:
    """Every requirement of the blueprint, each with its checks; see the module docstring."""
    ctx = requirement_context(bp, target, ev)
    checks: list[Check] = []
    for requirement in REQUIREMENTS:
        if requirement.applies(ctx):
            checks += requirement.check(ctx)
    figures = {
        "responses": len(ctx.responses),
        "requirements": [
            {
                "requirement": c.name.split(".")[0],
                "check": c.name,
                "status": c.status,
                "evidence": c.evidence,
                "message": c.message,
            }
            for c in checks
        ],
    }
    return GateResult.from_checks("compliance", checks, figures)
