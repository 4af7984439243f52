"""slo: the service level the blueprint promises, judged on the load gate's figures.

Always checked (every blueprint has SLOs): the same thresholds as the load gate, with the
target's overrides, so the compliance report shows the SLOs next to the other requirements; a run
whose load gate produced no figures fails it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance.base import RequirementContext
from llmctl.gates.results import Check, ge, le

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

REQUIREMENT = "slo"


def applies(ctx: RequirementContext) -> bool:
    return True


def check(ctx: RequirementContext) -> list[Check]:
    return check_slos(ctx.bp, ctx.evidence.load_figures, ctx.evidence.load_thresholds)


def check_slos(bp: Blueprint, figures: dict[str, Any] | None, gate: Any) -> list[Check]:
    """p95 latency, p95 TTFT, error rate (and throughput where a minimum is set) against ``gate``."""
    if figures is None or gate is None:
        return [
            Check(
                "slo.load-figures",
                False,
                "the load gate produced no figures",
                evidence="SLOs: load gate",
            )
        ]
    checks = [
        le("slo.latency_p95_ms", figures.get("p95_latency_ms"), gate.p95_latency_ms, " ms"),
        le("slo.ttft_p95_ms", figures.get("p95_ttft_ms"), gate.p95_ttft_ms, " ms"),
        le("slo.error_rate", figures.get("error_rate"), gate.max_error_rate),
    ]
    if gate.min_throughput_rps:
        checks.append(
            ge(
                "slo.throughput_rps",
                figures.get("throughput_rps"),
                gate.min_throughput_rps,
                " req/s",
            )
        )
    for c in checks:
        c.evidence = "SLOs (with this target's gate overrides): the load gate's figures"
    return checks
