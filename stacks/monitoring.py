"""ServiceMonitors and alert rules (Prometheus operator) and a Grafana dashboard for the gateway
and Triton."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .spec import StackSpec, dashboard_title, dashboard_uid

#: Series the dashboard reads. Gateway names come from llmctl/gateway/metrics.py (prometheus_client
#: adds _total to counters, _bucket to histograms); Triton's from its metrics endpoint.
GATEWAY_SERIES = (
    "llmctl_gateway_requests_total",
    "llmctl_gateway_requests_in_flight",
    "llmctl_gateway_request_seconds_bucket",
    "llmctl_gateway_time_to_first_token_seconds_bucket",
    "llmctl_gateway_retrieval_seconds_bucket",
    "llmctl_gateway_overhead_seconds_bucket",
    "llmctl_gateway_generated_tokens_total",
)
TRITON_SERIES = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_queue_duration_us",
    "nv_inference_count",
    "nv_inference_pending_request_count",
    "nv_gpu_utilization",
    "nv_gpu_memory_used_bytes",
)


def _p95(metric: str, by: str = "le") -> str:
    return f"histogram_quantile(0.95, sum by ({by}) (rate({metric}[5m])))"


def dashboard(spec: StackSpec) -> dict[str, Any]:
    """The Grafana dashboard JSON: SLO panels first (what the blueprint promised), then capacity."""
    ns = f'namespace="{spec.namespace}"'
    panels = [
        (
            "Requests per second by outcome",
            f"sum by (outcome) (rate(llmctl_gateway_requests_total{{{ns}}}[5m]))",
            "reqps",
        ),
        ("p95 latency (s)", _p95(f"llmctl_gateway_request_seconds_bucket{{{ns}}}"), "s"),
        (
            "p95 time to first token (s)",
            _p95(f"llmctl_gateway_time_to_first_token_seconds_bucket{{{ns}}}"),
            "s",
        ),
        ("p95 retrieval (s)", _p95(f"llmctl_gateway_retrieval_seconds_bucket{{{ns}}}"), "s"),
        ("p95 gateway overhead (s)", _p95(f"llmctl_gateway_overhead_seconds_bucket{{{ns}}}"), "s"),
        ("Requests in flight", f"sum(llmctl_gateway_requests_in_flight{{{ns}}})", "short"),
        (
            "Generated tokens per second",
            f"sum(rate(llmctl_gateway_generated_tokens_total{{{ns}}}[5m]))",
            "short",
        ),
        (
            "Error ratio",
            f'sum(rate(llmctl_gateway_requests_total{{{ns},outcome=~"error|timeout|unavailable"}}[5m])) / clamp_min(sum(rate(llmctl_gateway_requests_total{{{ns}}}[5m])), 1e-9)',
            "percentunit",
        ),
        (
            "Triton inferences per second",
            f"sum by (model) (rate(nv_inference_request_success{{{ns}}}[5m]))",
            "reqps",
        ),
        (
            "Triton failures per second",
            f"sum by (model) (rate(nv_inference_request_failure{{{ns}}}[5m]))",
            "reqps",
        ),
        (
            "Triton mean queue time (µs)",
            f"sum by (model) (rate(nv_inference_queue_duration_us{{{ns}}}[5m])) / clamp_min(sum by (model) (rate(nv_inference_count{{{ns}}}[5m])), 1e-9)",
            "µs",
        ),
        (
            "Triton pending requests",
            f"sum by (model) (nv_inference_pending_request_count{{{ns}}})",
            "short",
        ),
        ("GPU utilisation", f"avg by (pod) (nv_gpu_utilization{{{ns}}})", "percentunit"),
        ("GPU memory used", f"sum by (pod) (nv_gpu_memory_used_bytes{{{ns}}})", "bytes"),
    ]
    return {
        "title": dashboard_title(spec.name, spec.target),
        "uid": dashboard_uid(spec.name),
        "tags": ["llmctl", spec.name],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": [
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"expr": expr, "refId": "A"}],
            }
            for i, (title, expr, unit) in enumerate(panels)
        ],
    }


class Monitoring(pulumi.ComponentResource):
    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Monitoring", base.name(spec, "monitoring"), None, opts)
        if spec.prometheus_operator and spec.metrics:
            for component, port in (("triton", "metrics"), ("gateway", "http")):
                name = base.name(spec, component)
                k8s.apiextensions.CustomResource(
                    name,
                    api_version="monitoring.coreos.com/v1",
                    kind="ServiceMonitor",
                    metadata=base.metadata(spec, name, component),
                    spec={
                        "selector": {"matchLabels": base.selector(spec, component)},
                        "namespaceSelector": {"matchNames": [spec.namespace]},
                        "endpoints": [{"port": port, "path": "/metrics", "interval": "15s"}],
                    },
                    opts=base.child(self),
                )
            if spec.alert_groups:
                # The SLO alerts (llmctl.ops.alerts): rules only, read by the operator's
                # Prometheus; nothing in the namespace gets any permission from them.
                name = base.name(spec, "alerts")
                k8s.apiextensions.CustomResource(
                    name,
                    api_version="monitoring.coreos.com/v1",
                    kind="PrometheusRule",
                    metadata=base.metadata(spec, name, "alerts"),
                    spec={"groups": [dict(g) for g in spec.alert_groups]},
                    opts=base.child(self),
                )
        if spec.dashboards:
            name = base.name(spec, "dashboard")
            k8s.core.v1.ConfigMap(
                name,
                metadata=base.metadata(
                    spec, name, "dashboard", extra_labels={"grafana_dashboard": "1"}
                ),
                data={f"{spec.name}.json": json.dumps(dashboard(spec), indent=2, sort_keys=True)},
                opts=base.child(self),
            )
        self.register_outputs({})
