"""Prometheus alert rules from a blueprint's SLOs, and what on-call does when each one fires.

The SLO alerts follow the Google SRE workbook, chapter "Alerting on SLOs" (multiwindow,
multi-burn-rate alerts): an alert needs both a long window (the budget really is burning) and a
short one (it still is, so the alert resets soon after a fix). Page on 1h+5m at burn 14.4 (2% of
a 30-day budget in an hour) or 6h+30m at burn 6 (5% in six hours); ticket on 1d+2h at burn 3 or
3d+6h at burn 1. The ratios come from recording rules, one series per window, so the alert
expressions stay cheap and read like the workbook's.

Symptoms (budget burn, an open breaker, a broken audit trail) page; causes that may not hurt yet
(queue time, KV cache, a stale index) make tickets. Every alert carries the runbook text for it
(``meaning``, ``checks``, ``actions``, from ``llmctl.ops.guidance``); ``llmctl.ops.runbook``
fills in the target's commands and renders the Markdown the ``runbook_url`` anchors point at.

Nothing here imports prometheus_client or pulumi: the rules are plain dicts, the same ones
``stacks/monitoring.py`` renders as a PrometheusRule and ``tests/test_ops_alerts.py`` feeds to
``promtool test rules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from llmctl.ops import guidance as guide

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

#: The gateway's request outcomes (``llmctl.gateway.metrics.OUTCOMES``), by whose doing a request
#: ended as it did. Only the service's own failures spend the error budget; requests the caller
#: got wrong (bad token, over its rate limit, a body too large, malformed or too slow to arrive,
#: hanging up) are neither good nor bad for the SLO and stay out of the denominator too.
GOOD_OUTCOMES = ("answered", "no_source")
SERVER_ERRORS = ("unavailable", "timeout", "error", "audit_unavailable")
CALLER_FAULTS = (
    "unauthorized",
    "rate_limited",
    "too_large",
    "bad_request",
    "request_timeout",
    "client_disconnected",
)
#: The buckets (seconds) of llmctl_gateway_request_seconds and
#: llmctl_gateway_time_to_first_token_seconds: a copy of ``llmctl.gateway.metrics``'
#: ``_LATENCY_BUCKETS`` (that module needs prometheus_client, which the k8s install lacks);
#: tests/test_ops_alerts.py checks the two agree.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: A p95 objective lets 5% of requests be slower than its threshold: that is the budget.
P95_BUDGET = 0.05
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLO_DAYS = 30
Severity = Literal["page", "ticket"]
#: (suffix, severity, for, ((long window, short window, burn rate), ...)): the workbook's table.
BURN_ALERTS: tuple[tuple[str, Severity, str, tuple[tuple[str, str, float], ...]], ...] = (
    ("FastBurn", "page", "2m", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
    ("SlowBurn", "ticket", "15m", (("1d", "2h", 3.0), ("3d", "6h", 1.0))),
)
#: Mean Triton queue time that makes a ticket, as a share of the TTFT p95 objective: the HPA
#: (``stacks.spec._hpa_target``) scales out at a tenth; at half, scaling has not kept up and
#: queueing alone eats half of what the first token may take.
QUEUE_SHARE_OF_TTFT = 0.5
KV_CACHE_FULL = 0.9
#: The blueprint has no field for how old the served index may get; a week is the default a
#: weekly re-ingest (the usual policy-document cadence) never trips.
DEFAULT_INDEX_MAX_AGE_S = 7 * 86400
#: The label every rule's output carries, so several services can share one Prometheus.
SERVICE_LABEL = "llmctl_service"


@dataclass(frozen=True)
class Alert:
    """One alerting rule plus its runbook entry (``checks``/``actions`` may hold placeholders)."""

    name: str
    severity: Severity
    expr: str
    for_: str
    summary: str
    description: str
    meaning: str
    checks: tuple[str, ...]
    actions: tuple[str, ...]

    @property
    def anchor(self) -> str:
        """The Markdown heading anchor of this alert's runbook section (GitHub's slug of it)."""
        return self.name.lower()

    def rule(self, service: str, runbook: str) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, SERVICE_LABEL: service},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": f"{runbook}#{self.anchor}",
            },
        }


@dataclass(frozen=True)
class BurnSlo:
    """An SLO measured as a ratio of bad requests, with the share of them it may spend."""

    key: str  # alert name part: Availability, ErrorRate, Latency, Ttft
    title: str
    record: str  # recording rule prefix; the window is appended (``..._rate1h``)
    budget: float
    objective: str  # how the blueprint states it, for people


def runbook_path(bp: Blueprint, target_name: str = "local") -> str:
    """Where the runbook of a blueprint's target lives in the repository (``llmctl runbook -o``):
    the commands differ by target, so each target other than local has its own file."""
    suffix = "" if bp.target(target_name).is_local else f"-{target_name}"
    return f"docs/runbooks/{bp.name}{suffix}.md"


def series_selector(bp: Blueprint, target_name: str) -> str:
    """The label matchers that pick this service's series out of a shared Prometheus.

    A kubernetes target's ServiceMonitors scrape only its namespace, so ``namespace`` does. The
    local target runs no Prometheus: one set up for it scrapes only that stack, so no matcher.
    """
    target = bp.target(target_name)
    return "" if target.is_local else f'namespace="{target.namespace}"'


def bucket_at_or_above(threshold_ms: float) -> float:
    """The histogram bucket (seconds) counting a request as fast: the first at or just above the
    threshold, so a request between the threshold and that bucket counts as fast (the SLI is at
    most one bucket lenient, never stricter than the SLO). Above the last bucket, the last one:
    the histogram cannot tell apart anything slower."""
    seconds = threshold_ms / 1000.0
    return next((b for b in LATENCY_BUCKETS if b >= seconds - 1e-12), LATENCY_BUCKETS[-1])


def _le(bucket: float) -> str:
    """The ``le`` label value prometheus_client writes for a bucket (Go's float format)."""
    return repr(float(bucket))


def _num(x: float) -> str:
    return f"{round(x, 10):g}"


def _sel(metric: str, selector: str, *matchers: str) -> str:
    parts = [m for m in (selector, *matchers) if m]
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


def _sum(expr: str) -> str:
    return f"sum by (namespace) ({expr})"


def burn_slos(bp: Blueprint) -> tuple[BurnSlo, ...]:
    """The four request-ratio SLOs. Availability and the error rate share one SLI (a request the
    service failed) with different budgets: the blueprint states both, and each gets paged on."""
    slo = bp.requirements.slo
    latency_le = bucket_at_or_above(slo.latency_p95_ms)
    ttft_le = bucket_at_or_above(slo.ttft_p95_ms)
    return (
        BurnSlo(
            "Availability",
            "availability",
            "llmctl:request_errors:ratio_rate",
            1.0 - slo.availability,
            f"{_num(slo.availability * 100)}% of requests served",
        ),
        BurnSlo(
            "ErrorRate",
            "error rate",
            "llmctl:request_errors:ratio_rate",
            slo.error_rate,
            f"at most {_num(slo.error_rate * 100)}% of requests fail",
        ),
        BurnSlo(
            "Latency",
            "latency p95",
            "llmctl:request_slow:ratio_rate",
            P95_BUDGET,
            f"95% of requests complete within {_num(slo.latency_p95_ms)} ms "
            f"(measured at the {_num(latency_le)} s bucket)",
        ),
        BurnSlo(
            "Ttft",
            "time to first token p95",
            "llmctl:ttft_slow:ratio_rate",
            P95_BUDGET,
            f"95% of first tokens within {_num(slo.ttft_p95_ms)} ms "
            f"(measured at the {_num(ttft_le)} s bucket)",
        ),
    )


def recording_rules(bp: Blueprint, selector: str) -> list[dict[str, Any]]:
    """One ratio series per SLI and window, summed over the gateway's replicas.

    Zero traffic gives 0/0, no sample, so no alert: silence is the dashboards' business.
    """
    requests = "llmctl_gateway_requests_total"
    errors = f'outcome=~"{"|".join(SERVER_ERRORS)}"'
    counted = f'outcome=~"{"|".join(GOOD_OUTCOMES + SERVER_ERRORS)}"'
    slo = bp.requirements.slo
    # Buckets "at or just above" the SLO thresholds (see bucket_at_or_above): e.g. 10000 ms ->
    # le="10.0", 1500 ms -> le="2.5" (a request of 1.6 s counts as fast), 1000 ms -> le="1.0".
    # The request histogram also holds refused requests (401, 429: fast, few); it has no outcome.
    lat = "llmctl_gateway_request_seconds"
    ttft = "llmctl_gateway_time_to_first_token_seconds"
    lat_le = f'le="{_le(bucket_at_or_above(slo.latency_p95_ms))}"'
    ttft_le = f'le="{_le(bucket_at_or_above(slo.ttft_p95_ms))}"'
    rules = []
    for w in WINDOWS:

        def rate(metric: str, *matchers: str, w: str = w) -> str:
            return _sum(f"rate({_sel(metric, selector, *matchers)}[{w}])")

        ratios = {
            "llmctl:request_errors:ratio_rate": f"{rate(requests, errors)}\n/\n{rate(requests, counted)}",
            "llmctl:request_slow:ratio_rate": (
                f"1 - (\n  {rate(lat + '_bucket', lat_le)}\n/\n  {rate(lat + '_count')}\n)"
            ),
            "llmctl:ttft_slow:ratio_rate": (
                f"1 - (\n  {rate(ttft + '_bucket', ttft_le)}\n/\n  {rate(ttft + '_count')}\n)"
            ),
        }
        for record, expr in ratios.items():
            rules.append({"record": record + w, "expr": expr, "labels": {SERVICE_LABEL: bp.name}})
    return rules


def _burn_alerts(bp: Blueprint) -> list[Alert]:
    out = []
    svc = f'{SERVICE_LABEL}="{bp.name}"'
    for s in burn_slos(bp):
        budget = _num(s.budget)
        for suffix, severity, for_, pairs in BURN_ALERTS:
            expr = "\nor\n".join(
                f"(\n  {s.record}{long}{{{svc}}} > ({_num(burn)} * {budget})\nand\n"
                f"  {s.record}{short}{{{svc}}} > ({_num(burn)} * {budget})\n)"
                for long, short, burn in pairs
            )
            fastest = pairs[0][2]
            days = SLO_DAYS / fastest
            spoken = " or ".join(f"{_num(b)}x over {lw} and {sw}" for lw, sw, b in pairs)
            bad = "slow" if s.key in ("Latency", "Ttft") else "failed"
            out.append(
                Alert(
                    name=f"Llmctl{s.key}{suffix}",
                    severity=severity,
                    expr=expr,
                    for_=for_,
                    summary=f"{bp.name}: the {s.title} SLO is burning its error budget ({spoken})",
                    description=(
                        f"SLO: {s.objective}. Its error budget is {_num(s.budget * 100)}% of "
                        f"requests over {SLO_DAYS} days; {bad} requests are using it at "
                        f"{spoken}. At {_num(fastest)}x the whole budget lasts about "
                        f"{_num(round(days, 1))} days."
                    ),
                    meaning=guide.BURN_MEANING[s.key].format(bad=bad, spoken=spoken),
                    checks=guide.BURN_CHECKS[s.key],
                    actions=guide.BURN_ACTIONS[s.key] + guide.BURN_TAIL[severity],
                )
            )
    return out


def alerts(bp: Blueprint, selector: str) -> list[Alert]:
    """Every alert of the blueprint, in the order the runbook lists them."""
    slo = bp.requirements.slo
    audit_severity: Severity = "page" if bp.requirements.audit.required else "ticket"
    queue_us = slo.ttft_p95_ms * 1000 * QUEUE_SHARE_OF_TTFT
    by_model = "sum by (namespace, model)"
    kv_by = "max by (namespace, pod, model)"

    def kv_of(block_type: str) -> str:
        matcher = f'kv_cache_block_type="{block_type}"'
        return _sel("nv_trt_llm_kv_cache_block_metrics", selector, matcher)

    out = _burn_alerts(bp)
    out.append(
        Alert(
            name="LlmctlTritonQueueTimeHigh",
            severity="ticket",
            # mean time a request waits in Triton's scheduler before it runs, per model
            expr=(
                f"{by_model} (rate({_sel('nv_inference_queue_duration_us', selector)}[5m]))\n/\n"
                f"{by_model} (rate({_sel('nv_inference_request_success', selector)}[5m]))\n"
                f"> {_num(queue_us)}"
            ),
            for_="10m",
            summary=f"{bp.name}: Triton requests for {{{{ $labels.model }}}} queue too long",
            description=(
                f"Mean Triton queue time of {{{{ $labels.model }}}} above {_num(queue_us / 1000)} "
                f"ms for 10 minutes: {_num(QUEUE_SHARE_OF_TTFT * 100)}% of the {_num(slo.ttft_p95_ms)}"
                " ms TTFT p95 objective goes to waiting for a free batch slot."
            ),
            meaning=guide.QUEUE[0],
            checks=guide.QUEUE[1],
            actions=guide.QUEUE[2],
        )
    )
    out.append(
        Alert(
            name="LlmctlKvCacheNearlyFull",
            severity="ticket",
            # TensorRT-LLM's Triton backend: family nv_trt_llm_kv_cache_block_metrics, label
            # kv_cache_block_type (max, free, used, tokens_per, reused, fraction), plus model and
            # version (NVIDIA/TensorRT-LLM, triton_backend/inflight_batcher_llm/src/
            # custom_metrics_reporter/custom_metrics_reporter.cc and its metrics reference).
            # Older backends export no "fraction": used/max says the same.
            expr=(
                f"{kv_by} ({kv_of('fraction')}) > {_num(KV_CACHE_FULL)}\nor\n"
                f"(\n  {kv_by} ({kv_of('used')})\n/\n  {kv_by} ({kv_of('max')})\n)"
                f" > {_num(KV_CACHE_FULL)}"
            ),
            for_="10m",
            summary=f"{bp.name}: KV cache of {{{{ $labels.pod }}}} over {_num(KV_CACHE_FULL * 100)}% full",
            description=(
                f"More than {_num(KV_CACHE_FULL * 100)}% of the KV-cache blocks of "
                "{{ $labels.model }} on {{ $labels.pod }} in use for 10 minutes: new requests "
                "wait for blocks to free up, so TTFT grows."
            ),
            meaning=guide.KV[0],
            checks=guide.KV[1],
            actions=guide.KV[2],
        )
    )
    failures = _sel("llmctl_gateway_audit_write_failures_total", selector)
    out += [
        Alert(
            name="LlmctlAuditWriteFailures",
            severity=audit_severity,
            expr=f"sum by (namespace, pod) (increase({failures}[5m])) > 0",
            for_="0m",
            summary=f"{bp.name}: the audit sink of {{{{ $labels.pod }}}} refused records",
            description=(
                "The gateway could not write audit records in the last 5 minutes; "
                + (
                    "audit is required, so each of those requests was refused with a 503."
                    if bp.requirements.audit.required
                    else "audit is not required, so those answers went out without a record."
                )
            ),
            meaning=guide.AUDIT_FAIL[0],
            checks=guide.AUDIT_FAIL[1],
            actions=guide.AUDIT_FAIL[2],
        ),
        Alert(
            name="LlmctlAuditSinkDown",
            severity=audit_severity,
            expr=(
                f"min by (namespace, pod) ({_sel('llmctl_gateway_audit_sink_up', selector)}) == 0"
            ),
            for_="0m",
            summary=f"{bp.name}: the audit sink of {{{{ $labels.pod }}}} is down",
            description=(
                "The gateway's audit probe fails: "
                + (
                    "audit is required, so the pod reports not ready and refuses answers."
                    if bp.requirements.audit.required
                    else "answers go out without a record until it is back."
                )
            ),
            meaning=guide.AUDIT_DOWN[0],
            checks=guide.AUDIT_DOWN[1],
            actions=guide.AUDIT_DOWN[2],
        ),
    ]
    if bp.retrieval.enabled:
        ts = f"max by (namespace, pod) ({_sel('llmctl_gateway_index_updated_timestamp_seconds', selector)})"
        days = _num(DEFAULT_INDEX_MAX_AGE_S / 86400)
        out.append(
            Alert(
                name="LlmctlIndexStale",
                severity="ticket",
                # 0 means the gateway never learnt the index's time: unknown, not stale.
                expr=f"(time() - {ts} > {DEFAULT_INDEX_MAX_AGE_S})\nand\n({ts} > 0)",
                for_="1h",
                summary=f"{bp.name}: the index {{{{ $labels.pod }}}} serves is over {days} days old",
                description=(
                    f"The served index last changed more than {days} days ago: answers may cite "
                    "documents that have since been revised or withdrawn."
                ),
                meaning=guide.INDEX[0],
                checks=guide.INDEX[1],
                actions=guide.INDEX[2],
            )
        )
    out.append(
        Alert(
            name="LlmctlBackendCircuitOpen",
            severity="page",
            expr=(
                "max by (namespace, pod) "
                f"({_sel('llmctl_gateway_backend_circuit_open', selector)}) == 1"
            ),
            for_="2m",
            summary=f"{bp.name}: {{{{ $labels.pod }}}} considers Triton down (breaker open)",
            description=(
                "The gateway's breaker to Triton has been open for 2 minutes: every question "
                "fails fast with a 503 until a probe call succeeds."
            ),
            meaning=guide.BREAKER[0],
            checks=guide.BREAKER[1],
            actions=guide.BREAKER[2],
        )
    )
    return out


def rule_groups(
    bp: Blueprint, selector: str, *, runbook_url: str | None = None
) -> list[dict[str, Any]]:
    """The Prometheus rule groups (a rule file's ``groups``; a PrometheusRule's ``spec.groups``).

    ``runbook_url`` is where the runbook is published; the default is its path in the repository.
    """
    runbook = runbook_url or runbook_path(bp)
    return [
        {"name": f"llmctl-{bp.name}-slo-ratios", "rules": recording_rules(bp, selector)},
        {
            "name": f"llmctl-{bp.name}-alerts",
            "rules": [a.rule(bp.name, runbook) for a in alerts(bp, selector)],
        },
    ]
