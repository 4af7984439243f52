"""Prometheus metrics of the gateway, in a registry of its own (no global default registry, so
several apps in one test process do not collide).

Label values come only from fixed sets (endpoint names, the OUTCOMES below): nothing a caller
sends (user, group, question, document) can become a label, which keeps both cardinality and
ACL-protected names out of the monitoring system.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = (
    "answered",
    "no_source",
    "unauthorized",
    "rate_limited",
    "too_large",
    "bad_request",
    "unavailable",
    "timeout",
    "request_timeout",
    "client_disconnected",
    "error",
    "audit_unavailable",
)
ENDPOINTS = ("ask", "chat")
GROUNDING_OUTCOMES = ("grounded", "replaced", "ungrounded")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmctl_gateway_requests",
            "Requests by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "llmctl_gateway_requests_in_flight", "Requests being served.", registry=r
        )
        self.retrieval_seconds = Histogram(
            "llmctl_gateway_retrieval_seconds",
            "Embedding plus filtered index search.",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        # Per revision (ids llmctl made, never caller input): what a rollout compares.
        self.revision_requests = Counter(
            "llmctl_gateway_revision_requests",
            "Requests by the revision that answered and outcome.",
            ["revision", "outcome"],
            registry=r,
        )
        self.revision_completion_tokens = Counter(
            "llmctl_gateway_revision_completion_tokens",
            "Tokens generated, by the revision that answered (answer length per arm).",
            ["revision"],
            registry=r,
        )
        self.revision_ttft_seconds = Histogram(
            "llmctl_gateway_revision_ttft_seconds",
            "Time to first token by the revision that answered.",
            ["revision"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.revision_in_flight = Gauge(
            "llmctl_gateway_revision_requests_in_flight",
            "Requests being served, by the revision assigned to them.",
            ["revision"],
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "llmctl_gateway_time_to_first_token_seconds",
            "From request arrival to the first generated token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "llmctl_gateway_request_seconds",
            "Total latency per request.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead_seconds = Histogram(
            "llmctl_gateway_overhead_seconds",
            "Total latency minus time inside the LLM call (auth, retrieval, prompt, audit).",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.audit_write_failures = Counter(
            "llmctl_gateway_audit_write_failures",
            "Audit records the sink could not take (each one a refused answer with audit required).",
            registry=r,
        )
        self.audit_sink_up = Gauge(
            "llmctl_gateway_audit_sink_up", "1 while the audit sink takes records.", registry=r
        )
        self.audit_sink_up.set(1)
        self.backend_open = Gauge(
            "llmctl_gateway_backend_circuit_open",
            "1 while Triton is considered down after a timeout (asks fail fast with 503).",
            registry=r,
        )
        self.index_updated = Gauge(
            "llmctl_gateway_index_updated_timestamp_seconds",
            "Unix time of the served index's last change (its manifest's updated_at): staleness.",
            registry=r,
        )
        self.grounding = Counter(
            "llmctl_gateway_grounding",
            "Answers by endpoint and grounding outcome: grounded, replaced (enforce: the quotes "
            "were returned instead), ungrounded (report: returned with its unsupported spans).",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.grounding_seconds = Histogram(
            "llmctl_gateway_grounding_seconds",
            "Quote selection plus the check of one answer (the embedder calls included).",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.generated_tokens = Counter(
            "llmctl_gateway_generated_tokens", "Tokens generated by the LLM.", registry=r
        )
        for endpoint in ENDPOINTS:  # export zeros so dashboards see every series from the start
            for outcome in OUTCOMES:
                self.requests.labels(endpoint, outcome)
            self.request_seconds.labels(endpoint)
            for outcome in GROUNDING_OUTCOMES:
                self.grounding.labels(endpoint, outcome)
