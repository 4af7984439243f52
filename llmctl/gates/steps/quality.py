"""The quality gate's run: the evaluation set through the gateway, scored against the baseline.

Asking, scoring and judging live in ``llmctl.gates.quality``; this run picks the questions
(``--eval-limit``), reports progress, and writes the baseline on ``--update-baseline``.
"""

from __future__ import annotations

from llmctl.gates import quality
from llmctl.gates.results import SKIPPED, GateResult
from llmctl.gates.steps.base import GateContext

NAME = "quality"


def run(ctx: GateContext) -> GateResult:
    """Skipped without an evaluation set; every answer asked is also compliance evidence."""
    if not ctx.questions:
        return GateResult(NAME, SKIPPED, "no evaluation set (gates.quality.evalSet)")
    stack, qg, bp = ctx.stack, ctx.thresholds.quality, ctx.bp
    picked = quality.select(ctx.questions, ctx.options.eval_limit)
    ctx.say(NAME, f"asking {len(picked)} evaluation questions", 0.0)
    got = quality.ask_all(
        stack.gateway_url,
        picked,
        stack.token_for,
        workers=ctx.options.quality_workers,
        on_progress=lambda d, n: ctx.say(NAME, f"{d}/{n} questions", d / n),
    )
    ctx.evidence.responses += got
    figures = quality.score(picked, got, ctx.doc_acls)
    baseline_path = bp.resolve_path(qg.baseline) if qg.baseline else None
    baseline = quality.read_baseline(baseline_path) if baseline_path else None
    gate = quality.quality_gate(figures, qg, baseline)
    gate.figures["baseline_file"] = str(baseline_path) if baseline_path else None
    if ctx.options.update_baseline and baseline_path:
        quality.write_baseline(
            baseline_path,
            figures,
            eval_hash=quality.eval_set_hash(ctx.questions),
            blueprint_hash=bp.hash,
        )
        gate.figures["baseline_updated"] = True
        ctx.say(NAME, f"baseline written to {baseline_path}", None)
    return gate
