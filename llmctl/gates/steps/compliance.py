"""The compliance gate's run: the probe user's questions, then every requirement on the evidence.

It collects what ``llmctl.gates.compliance`` judges: the responses this run recorded (written to
``evidence/responses.jsonl`` even when the gate is skipped, so a failed run keeps them), the
stack's audit file, listeners and endpoints, the load figures and the rendered manifests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.gates import compliance, quality
from llmctl.gates.askers import probe_questions
from llmctl.gates.remote import RemoteStack
from llmctl.gates.results import GateResult
from llmctl.gates.steps.base import GateContext

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

NAME = "compliance"


def record_responses(ctx: GateContext) -> Path:
    """Every response this run recorded, as the JSONL file the compliance checks read."""
    path = ctx.evidence_dir / "responses.jsonl"
    compliance.write_responses(path, ctx.evidence.responses)
    return path


def run(ctx: GateContext) -> GateResult:
    """The probe user asks the restricted questions; the evidence is saved, then judged."""
    stack, bp = ctx.stack, ctx.bp
    restricted = probe_questions(bp, list(ctx.questions))
    if restricted:
        ctx.say(NAME, f"probe user asks {len(restricted)} restricted questions", None)
        ctx.evidence.responses += quality.ask_all(
            stack.gateway_url,
            restricted,
            stack.token_for,
            workers=ctx.options.quality_workers,
            source="probe",
        )
    responses_file = record_responses(ctx)
    load_result = ctx.evidence.load_result
    audit_file, origin, error = stack.audit_file, None, None
    if isinstance(stack, RemoteStack) and bp.requirements.audit.required:
        audit_file, error = remote_audit(ctx, stack)
        origin = stack.gateway_url
    ev = compliance.Evidence(
        responses_file=responses_file,
        audit_file=audit_file,
        audit_origin=origin,
        audit_error=error,
        listeners=stack.listeners(),
        endpoints=stack.endpoints(),
        load_figures=load_result["figures"] if load_result else None,
        load_thresholds=ctx.thresholds.load if ctx.result.gate("load") is not None else None,
        doc_acls=ctx.doc_acls,
        manifests=kubernetes_manifests(bp),
    )
    compliance.save_evidence(ctx.evidence_dir, ev)
    return compliance.check_compliance(bp, ctx.target_spec, ev)


def remote_audit(ctx: GateContext, stack: RemoteStack) -> tuple[Path | None, str | None]:
    """This run's audit records read over the gateway as the blueprint's auditor, saved as
    ``evidence/audit-records.jsonl`` (so they can be re-judged); or why they could not be."""
    from llmctl.errors import LlmctlError
    from llmctl.gates.remote import fetch_audit

    group = ctx.bp.requirements.audit.auditor_group
    if not group:
        return None, (
            "the blueprint names no requirements.audit.auditorGroup, so the remote audit trail "
            "cannot be read; name one and deploy again"
        )
    ids = [str(r["request_id"]) for r in ctx.evidence.responses if r.get("request_id")]
    ctx.say(NAME, f"reading {len(ids)} audit records from {stack.gateway_url}", None)
    try:
        records = fetch_audit(stack, ids, group)
    except LlmctlError as exc:
        return None, str(exc)
    path = ctx.evidence_dir / "audit-records.jsonl"
    compliance.write_responses(path, records)
    return path, None


def kubernetes_manifests(bp: Blueprint) -> dict[str, list[dict[str, Any]] | str]:
    """Rendered manifests of each kubernetes target (Pulumi mocks, no cluster), or why not."""
    out: dict[str, list[dict[str, Any]] | str] = {}
    targets = [t for t in bp.targets.values() if t.type == "kubernetes"]
    if not targets:
        return out
    try:
        from llmctl.k8s.render import render
        from llmctl.targets.kubernetes import resolve_spec
    except ImportError as exc:
        why = f"cannot render kubernetes manifests here ({exc}); install llmctl[k8s]"
        return {t.name: why for t in targets}
    for t in targets:
        try:
            out[t.name] = [dict(m) for m in render(resolve_spec(bp, t.name)).manifests]
        except Exception as exc:  # another component's failure: report it, do not crash verify
            out[t.name] = f"render failed: {type(exc).__name__}: {exc}"
    return out
