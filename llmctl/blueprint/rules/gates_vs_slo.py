"""LLM-GATE-001: the blueprint's gate thresholds are not looser than the SLOs they verify.

A gate that passes at 12 s when the SLO promises 8 s verifies nothing. Target-level overrides
(``targets.<name>.gates``) are exempt: a CPU-only local stack cannot meet production latency, and
saying so per target is their purpose.

Passing::

    requirements: {slo: {latencyP95Ms: 8000}}
    gates: {load: {p95LatencyMs: 8000}}

Failing::

    requirements: {slo: {latencyP95Ms: 8000}}
    gates: {load: {p95LatencyMs: 12000}}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-GATE-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    slo = ctx.bp.requirements.slo
    load = ctx.bp.gates.load
    pairs = (
        ("p95LatencyMs", load.p95_latency_ms, "latencyP95Ms", slo.latency_p95_ms),
        ("p95TtftMs", load.p95_ttft_ms, "ttftP95Ms", slo.ttft_p95_ms),
        ("maxErrorRate", load.max_error_rate, "errorRate", slo.error_rate),
    )
    for gate_key, gate_value, slo_key, slo_value in pairs:
        if gate_value > slo_value:
            yield ctx.problem(
                ("gates", "load", gate_key),
                f"gates.load.{gate_key} {gate_value:g} is looser than the SLO's {slo_key} "
                f"{slo_value:g}; a gate must be at least as strict as what it verifies "
                "(per-target overrides go in targets.<name>.gates)",
            )
