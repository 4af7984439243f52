"""audit: with ``audit.required``, every request of this run has exactly one complete audit record.

The records are read from the gateway's own audit JSONL (rotated files included) and matched to
the request ids the gateway returned; each must carry every field of ``AUDIT_FIELDS`` and agree
with the response (subject, cited documents). A missing file, a missing record, a duplicate or a
record that disagrees fails it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance.base import RequirementContext
from llmctl.gates.compliance.evidence import read_audit, read_jsonl
from llmctl.gates.results import Check

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

REQUIREMENT = "audit"

#: Audit fields that must be present (and non-empty where it matters) for every request.
AUDIT_FIELDS = (
    "request_id",
    "time",
    "endpoint",
    "outcome",
    "status",
    "subject",
    "groups",
    "question_hmac",
    "question_key_id",
    "cited_doc_ids",
    "cited_chunks",
    "blueprint_hash",
    "engine_hash",
    "index_hash",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
)
AUDIT_NON_EMPTY = (
    "request_id",
    "time",
    "outcome",
    "subject",
    "question_hmac",
    "question_key_id",
    "blueprint_hash",
)


def applies(ctx: RequirementContext) -> bool:
    return bool(ctx.bp.requirements.audit.required)


def check(ctx: RequirementContext) -> list[Check]:
    ev = ctx.evidence
    if ev.audit_error:
        return [Check("audit.one-record-per-request", False, ev.audit_error)]
    audit_file = ev.audit_file
    if audit_file is None or not audit_file.exists():
        return [Check("audit.one-record-per-request", False, f"no audit file at {audit_file}")]
    if ev.audit_origin:  # records read over HTTP: a selection, so no chain to follow here
        records = read_jsonl(audit_file)
        return [
            *check_audit(ctx.bp, ctx.responses, records),
            check_record_acls(ctx.responses, records, ev.doc_acls),
            Check(
                "audit.chain-intact",
                None,
                f"records read from {ev.audit_origin}: the hash chain is checked where the "
                "sink is (`llmctl audit verify`)",
            ),
        ]
    return [*check_audit(ctx.bp, ctx.responses, read_audit(audit_file)), chain_check(audit_file)]


def check_record_acls(
    responses: Sequence[dict[str, Any]],
    audit: Sequence[dict[str, Any]],
    doc_acls: dict[str, Sequence[str]],
) -> Check:
    """``audit.citations-within-groups``: each audited request of this run cited only documents
    its recorded groups may read (the gateway's own account of what it showed to whom)."""
    mine = {str(r["request_id"]) for r in responses if r.get("request_id")}
    outside = [
        f"{rec.get('request_id')} ({rec.get('subject')}, groups {rec.get('groups')}): {d}"
        for rec in audit
        if str(rec.get("request_id")) in mine and rec.get("stage") != "intent"
        for d in rec.get("cited_doc_ids") or []
        if d not in doc_acls or not set(rec.get("groups") or []) & set(doc_acls[d])
    ]
    return Check(
        "audit.citations-within-groups",
        not outside,
        "every audited citation within the caller's groups"
        if not outside
        else f"{len(outside)} audited citations outside the caller's groups: "
        + "; ".join(outside[:3]),
        value=len(outside),
        threshold=0,
        evidence="audit required: cited_doc_ids of each record against the corpus ACLs",
    )


def chain_check(audit_file: Path) -> Check:
    """``audit.chain-intact``: no record of the trail removed or edited (its hash chain)."""
    from llmctl.gateway.audit_chain import verify_trail

    report = verify_trail(audit_file)
    return Check(
        "audit.chain-intact",
        report.ok,
        report.summary()[0],
        value=report.records,
        evidence="audit required: every record links to the SHA-256 of the one before it",
    )


def check_audit(
    bp: Blueprint, responses: Sequence[dict[str, Any]], audit: Sequence[dict[str, Any]]
) -> list[Check]:
    """``audit.one-record-per-request`` and ``audit.fields-complete`` for ``responses``."""
    req = "audit required"
    made = [r for r in responses if r.get("request_id")]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in audit:
        if rec.get("stage") == "intent":  # a streamed answer's first record; its completion follows
            continue
        by_id.setdefault(str(rec.get("request_id")), []).append(rec)
    missing = [r["request_id"] for r in made if r["request_id"] not in by_id]
    dupes = [r["request_id"] for r in made if len(by_id.get(r["request_id"], [])) > 1]
    ok = bool(made) and not missing and not dupes
    msg = (
        f"{len(made)} requests, {len(made) - len(missing)} with exactly one audit record"
        if ok
        else f"{len(made)} requests: {len(missing)} without an audit record"
        + (f" (e.g. {', '.join(missing[:3])})" if missing else "")
        + (f", {len(dupes)} with several" if dupes else "")
    )
    checks = [
        Check(
            "audit.one-record-per-request",
            ok,
            msg,
            value=len(missing) + len(dupes),
            threshold=0,
            evidence=f"{req}: audit JSONL matched to this run's request ids",
        )
    ]
    incomplete, mismatched = _record_problems(made, by_id)
    checks.append(
        Check(
            "audit.fields-complete",
            bool(made) and not incomplete and not mismatched,
            "every record complete and consistent with the response"
            if not incomplete and not mismatched
            else "; ".join((incomplete + mismatched)[:4]),
            value=len(incomplete) + len(mismatched),
            threshold=0,
            evidence=f"{req}: fields {', '.join(AUDIT_FIELDS)}; subject and cited documents against the response",
        )
    )
    return checks


def _record_problems(
    made: Sequence[dict[str, Any]], by_id: dict[str, list[dict[str, Any]]]
) -> tuple[list[str], list[str]]:
    """Per request, its first audit record's missing fields and disagreements with the response."""
    incomplete, mismatched = [], []
    for r in made:
        for rec in by_id.get(r["request_id"], [])[:1]:
            lacking = [f for f in AUDIT_FIELDS if f not in rec] + [
                f for f in AUDIT_NON_EMPTY if f in rec and not rec[f]
            ]
            if lacking:
                incomplete.append(f"{r['request_id']} lacks {', '.join(lacking)}")
            if r.get("user") and rec.get("subject") != r["user"]:
                mismatched.append(f"{r['request_id']}: subject {rec.get('subject')} != {r['user']}")
            if r.get("outcome") == "answered" and sorted(set(r.get("citations") or [])) != sorted(
                rec.get("cited_doc_ids") or []
            ):
                mismatched.append(
                    f"{r['request_id']}: cited {sorted(set(r.get('citations') or []))} but audited {rec.get('cited_doc_ids')}"
                )
    return incomplete, mismatched
