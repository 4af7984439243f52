"""``verify(bp, target)``: the gates CI trusts, in order, against a running stack.

1. check: the blueprint's schema and rules;
2. smoke: every component healthy, one cited answer;
3. load: the Locust profile from ``loadtests/`` with ``bp.gates_for(target).load``;
4. quality: the evaluation set through the gateway, against the stored baseline;
5. compliance: each requirement against the evidence this run recorded.

A gate that cannot run because an earlier one failed (no stack, no answer) is reported as skipped
with the reason; the run still fails because of the earlier gate. Every request this run makes
is recorded in ``<report>/evidence/responses.jsonl``, which the compliance gate reads back.

The gates are one module each in ``llmctl.gates.steps`` and run by ``llmctl.gates.runner``; this
module sets a run up and writes its reports, and keeps the names callers import from it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from llmctl.gates.askers import doc_acls, identities_and_questions, probe_groups
from llmctl.gates.compliance import load_evidence
from llmctl.gates.results import VerifyResult
from llmctl.gates.runner import run_gates
from llmctl.gates.stack import Stack
from llmctl.gates.steps import GATE_ORDER, GATES
from llmctl.gates.steps.base import GateContext, VerifyOptions, VerifyProgress, no_progress
from llmctl.gates.steps.compliance import kubernetes_manifests

__all__ = [
    "GATES",
    "GATE_ORDER",
    "Stack",
    "VerifyProgress",
    "doc_acls",
    "identities_and_questions",
    "kubernetes_manifests",
    "load_evidence",
    "probe_groups",
    "verify",
]


def verify(
    blueprint: Any,
    target: str = "local",
    *,
    report_dir: str | os.PathLike[str] | None = None,
    junit: str | os.PathLike[str] | None = None,
    update_baseline: bool = False,
    eval_limit: int | None = None,
    quality_workers: int = 2,
    on_progress: VerifyProgress | None = None,
    stack: Any = None,
    url: str | None = None,
    token_command: str | None = None,
) -> VerifyResult:
    """Run every gate for ``blueprint`` (a path or a loaded Blueprint) on ``target``.

    Writes ``verify.json``, ``index.html``, plots and ``evidence/`` under ``report_dir`` (a
    temporary folder when None) and JUnit XML to ``junit``; returns the result (``.ok``).
    ``stack`` replaces the target's running stack (anything with ``Stack``'s attributes), for a
    gateway served some other way. ``url`` reaches a gateway over the network instead (a
    deployed target; a target that is not local needs one, or a known endpoint), its callers'
    tokens from ``token_command`` or the blueprint's token endpoint (``llmctl.gates.identity``).
    """
    t_start = time.monotonic()
    bp_path = Path(getattr(blueprint, "path", blueprint))
    out = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="llmctl-verify-"))
    out.mkdir(parents=True, exist_ok=True)
    result = VerifyResult(
        blueprint=getattr(blueprint, "name", bp_path.stem),
        blueprint_path=str(bp_path),
        target=target,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        report_dir=str(out),
    )
    ctx = GateContext(
        blueprint_path=bp_path,
        target=target,
        report_dir=out,
        result=result,
        options=VerifyOptions(update_baseline, eval_limit, quality_workers, url, token_command),
        say=on_progress or no_progress,
        stack=stack,
    )
    run_gates(ctx)
    result.seconds = time.monotonic() - t_start
    from llmctl.gates.junit import write_junit
    from llmctl.gates.report import write_reports

    write_reports(result, out, ctx.evidence.samples)
    write_junit(result, Path(junit) if junit else out / "junit.xml")
    return result
