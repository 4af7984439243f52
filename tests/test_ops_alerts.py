"""The alert rules of both example blueprints, checked and unit-tested by promtool.

``promtool test rules`` runs the real rule engine over synthetic series: each failure mode (a
sustained error burst, slow requests, audit write failures, a stale index, an open breaker,
queueing, a full KV cache) must fire its alerts, and a healthy service must fire none. The unit
tests are generated here from the same ``llmctl.ops.alerts`` objects the rules come from, so the
expected labels and annotations are the ones on-call will see.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmctl.blueprint import load_blueprint
from llmctl.ops import alerts as ops

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "hr-policy-assistant": (ROOT / "blueprints" / "hr-policy-assistant.yaml", "prod"),
    "support-chatbot": (ROOT / "blueprints" / "support-chatbot.yaml", "coreweave"),
}
params = pytest.mark.parametrize("name", sorted(EXAMPLES))

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (make test installs Debian's prometheus as root)",
)


def _load(name: str) -> tuple[Any, str]:
    path, target = EXAMPLES[name]
    bp = load_blueprint(path)
    return bp, ops.series_selector(bp, target)


# --- without promtool: the rules agree with what the gateway exports --------------------------


def test_outcomes_are_classified_exactly_once() -> None:
    pytest.importorskip("prometheus_client")
    from llmctl.gateway.metrics import OUTCOMES

    classified = ops.GOOD_OUTCOMES + ops.SERVER_ERRORS + ops.CALLER_FAULTS
    assert sorted(classified) == sorted(OUTCOMES)
    assert len(set(classified)) == len(classified)


def test_latency_buckets_match_the_gateway_histograms() -> None:
    pytest.importorskip("prometheus_client")
    from llmctl.gateway.metrics import _LATENCY_BUCKETS, GatewayMetrics

    assert tuple(float(b) for b in _LATENCY_BUCKETS) == ops.LATENCY_BUCKETS
    exported = {
        s.labels["le"]
        for fam in GatewayMetrics().registry.collect()
        if fam.name == "llmctl_gateway_time_to_first_token_seconds"
        for s in fam.samples
        if "le" in s.labels
    }
    for ms in (1000, 1500, 8000, 10000):  # the examples' thresholds: their le labels exist
        assert ops._le(ops.bucket_at_or_above(ms)) in exported


def test_bucket_is_at_or_just_above_the_threshold() -> None:
    assert ops.bucket_at_or_above(1000) == 1.0
    assert ops.bucket_at_or_above(1500) == 2.5
    assert ops.bucket_at_or_above(8000) == 10.0
    assert ops.bucket_at_or_above(120_000) == 60.0


@params
def test_every_alert_is_named_once_with_severity_and_runbook_text(name: str) -> None:
    bp, selector = _load(name)
    found = ops.alerts(bp, selector)
    names = [a.name for a in found]
    assert len(names) == len(set(names))
    assert all(a.severity in ("page", "ticket") and a.checks and a.actions for a in found)
    pages = {a.name for a in found if a.severity == "page"}
    # both examples require audit: its alerts page
    assert {"LlmctlAuditWriteFailures", "LlmctlAuditSinkDown", "LlmctlBackendCircuitOpen"} <= pages
    assert "LlmctlIndexStale" in names and "LlmctlIndexStale" not in pages


def test_local_selector_matches_everything_kubernetes_its_namespace() -> None:
    bp, _ = _load("hr-policy-assistant")
    assert ops.series_selector(bp, "local") == ""
    assert ops.series_selector(bp, "prod") == 'namespace="hr-policy-assistant"'
    groups = ops.rule_groups(bp, "")
    assert all("{}" not in r["expr"] for g in groups for r in g["rules"])


# --- promtool ---------------------------------------------------------------------------------


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def _write_rules(bp: Any, selector: str, folder: Path) -> Path:
    path = folder / f"{bp.name}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": ops.rule_groups(bp, selector)}, sort_keys=False))
    return path


@needs_promtool
@params
def test_promtool_check_rules(name: str, tmp_path: Path) -> None:
    bp, selector = _load(name)
    done = _promtool("check", "rules", _write_rules(bp, selector, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


@dataclass
class Scenario:
    """One promtool test group: input series, and the alerts firing at ``eval_time`` with the
    labels they carry beyond the rule's own (the rest of the blueprint's alerts must not)."""

    name: str
    interval: str
    eval_time: str
    series: list[dict[str, str]]
    firing: dict[str, dict[str, str]] = field(default_factory=dict)
    #: how often promtool evaluates the rules: a week of minutes costs half a minute
    evaluation_interval: str = "1m"


def _expand(text: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def _scenarios(bp: Any, namespace: str) -> list[Scenario]:
    slo = bp.requirements.slo
    lat_le = ops._le(ops.bucket_at_or_above(slo.latency_p95_ms))
    ttft_le = ops._le(ops.bucket_at_or_above(slo.ttft_p95_ms))
    ns = {"namespace": namespace}
    gw = {**ns, "pod": f"{bp.name}-gateway-0", "job": f"{bp.name}-gateway"}
    tr = {**ns, "pod": f"{bp.name}-triton-0", "model": "tensorrt_llm", "version": "1"}
    req = "llmctl_gateway_requests_total"
    lat, ttft = "llmctl_gateway_request_seconds", "llmctl_gateway_time_to_first_token_seconds"
    kv = "nv_trt_llm_kv_cache_block_metrics"
    span = "x300"  # five hours of one-minute samples

    def traffic(ok: int, failed: int, slow_share: float, ttft_slow_share: float) -> list[Any]:
        """Requests per minute: answered, unavailable, refused for the caller's fault (must not
        count), and histograms with the given share slower than the SLO's bucket."""
        return [
            _series(req, {**gw, "endpoint": "ask", "outcome": "answered"}, f"0+{ok}{span}"),
            _series(req, {**gw, "endpoint": "ask", "outcome": "unavailable"}, f"0+{failed}{span}"),
            _series(req, {**gw, "endpoint": "ask", "outcome": "unauthorized"}, f"0+5000{span}"),
            _series(req, {**gw, "endpoint": "ask", "outcome": "rate_limited"}, f"0+5000{span}"),
            _series(
                f"{lat}_bucket",
                {**gw, "endpoint": "ask", "le": lat_le},
                f"0+{round(ok * (1 - slow_share))}{span}",
            ),
            _series(f"{lat}_count", {**gw, "endpoint": "ask"}, f"0+{ok}{span}"),
            _series(
                f"{ttft}_bucket",
                {**gw, "le": ttft_le},
                f"0+{round(ok * (1 - ttft_slow_share))}{span}",
            ),
            _series(f"{ttft}_count", gw, f"0+{ok}{span}"),
        ]

    def healthy_gauges(failures: str = f"0{span}", sink: str = f"1{span}") -> list[Any]:
        return [
            _series("llmctl_gateway_audit_write_failures_total", gw, failures),
            _series("llmctl_gateway_audit_sink_up", gw, sink),
            _series("llmctl_gateway_backend_circuit_open", gw, f"0{span}"),
            _series("llmctl_gateway_index_updated_timestamp_seconds", gw, f"600{span}"),
            # 600 inferences a minute waiting 1 ms each; KV cache half used
            _series("nv_inference_queue_duration_us", tr, f"0+600000{span}"),
            _series("nv_inference_request_success", tr, f"0+600{span}"),
            _series(kv, {**tr, "kv_cache_block_type": "fraction"}, f"0.5{span}"),
        ]

    burn = {"namespace": namespace}
    per_pod = {"namespace": namespace, "pod": gw["pod"]}
    return [
        # 1000 answered and 20 slow-ish a minute (2% < the 5% a p95 allows), no failures, a
        # flood of refusals that are the callers' fault: nothing fires, at any time.
        *(
            Scenario("healthy", "1m", t, traffic(1000, 0, 0.02, 0.02) + healthy_gauges())
            for t in ("10m", "1h", "4h")
        ),
        # a third of the requests fail for 4 hours: both availability and error-rate alerts
        Scenario(
            "error burst",
            "1m",
            "4h",
            traffic(100, 50, 0.0, 0.0) + healthy_gauges(),
            {
                f"Llmctl{k}{s}": burn
                for k in ("Availability", "ErrorRate")
                for s in ("FastBurn", "SlowBurn")
            },
        ),
        # 80% of requests and 90% of first tokens slower than the objective
        Scenario(
            "slow requests",
            "1m",
            "4h",
            traffic(100, 0, 0.8, 0.9) + healthy_gauges(),
            {f"Llmctl{k}{s}": burn for k in ("Latency", "Ttft") for s in ("FastBurn", "SlowBurn")},
        ),
        # the sink refuses records from minute 10 on and its probe fails
        Scenario(
            "audit failing",
            "1m",
            "15m",
            traffic(100, 0, 0.0, 0.0) + healthy_gauges("0x9 1+1x290", "1x9 0x291"),
            {"LlmctlAuditWriteFailures": per_pod, "LlmctlAuditSinkDown": per_pod},
        ),
        # Triton stops answering at minute 5: the breaker is open from then on
        Scenario(
            "breaker open",
            "1m",
            "10m",
            traffic(100, 0, 0.0, 0.0)
            + [
                g if "circuit_open" not in g["series"] else {**g, "values": "0x4 1x296"}
                for g in healthy_gauges()
            ],
            {"LlmctlBackendCircuitOpen": per_pod},
        ),
        # a second of queueing per inference, and the KV cache 95% full, for 25 minutes
        Scenario(
            "saturated",
            "1m",
            "25m",
            traffic(100, 0, 0.0, 0.0)
            + [
                g
                for g in healthy_gauges()
                if not g["series"].startswith(("nv_inference_queue", kv))
            ]
            + [
                _series("nv_inference_queue_duration_us", tr, f"0+600000000{span}"),
                _series(kv, {**tr, "kv_cache_block_type": "fraction"}, f"0.95{span}"),
            ],
            {
                "LlmctlTritonQueueTimeHigh": {"namespace": namespace, "model": tr["model"]},
                "LlmctlKvCacheNearlyFull": {
                    "namespace": namespace,
                    "pod": tr["pod"],
                    "model": tr["model"],
                },
            },
        ),
        # an index last changed at t=600 s, looked at eight days later (5-minute samples: a
        # sparser series would vanish between samples, past the 5-minute lookback)
        Scenario(
            "stale index",
            "5m",
            "192h",
            [_series("llmctl_gateway_index_updated_timestamp_seconds", gw, "600x2400")],
            {"LlmctlIndexStale": per_pod},
            evaluation_interval="30m",
        ),
        # an older TensorRT-LLM backend without "fraction": used/max says 95%
        Scenario(
            "kv cache from used and max",
            "1m",
            "25m",
            [
                _series(kv, {**tr, "kv_cache_block_type": "used"}, "950x40"),
                _series(kv, {**tr, "kv_cache_block_type": "max"}, "1000x40"),
            ],
            {
                "LlmctlKvCacheNearlyFull": {
                    "namespace": namespace,
                    "pod": tr["pod"],
                    "model": tr["model"],
                }
            },
        ),
    ]


def _unit_tests(bp: Any, selector: str, namespace: str, rules: Path) -> list[dict[str, Any]]:
    """promtool unit-test files, one per evaluation interval (it is a file's setting)."""
    by_name = {a.name: a for a in ops.alerts(bp, selector)}
    files: dict[str, list[dict[str, Any]]] = {}
    for sc in _scenarios(bp, namespace):
        cases = []
        for alertname, alert in by_name.items():
            expected = []
            if alertname in sc.firing:
                labels = {
                    **sc.firing[alertname],
                    "severity": alert.severity,
                    ops.SERVICE_LABEL: bp.name,
                }
                rule = alert.rule(bp.name, ops.runbook_path(bp))
                annotations = {k: _expand(v, labels) for k, v in rule["annotations"].items()}
                expected.append({"exp_labels": labels, "exp_annotations": annotations})
            cases.append(
                {"eval_time": sc.eval_time, "alertname": alertname, "exp_alerts": expected}
            )
        files.setdefault(sc.evaluation_interval, []).append(
            {
                "name": f"{bp.name}: {sc.name} at {sc.eval_time}",
                "interval": sc.interval,
                "input_series": sc.series,
                "alert_rule_test": cases,
            }
        )
    return [
        {"rule_files": [rules.name], "evaluation_interval": every, "tests": tests}
        for every, tests in files.items()
    ]


@params
def test_every_alert_has_a_scenario_that_fires_it(name: str) -> None:
    bp, selector = _load(name)
    fired = {a for sc in _scenarios(bp, "ns") for a in sc.firing}
    assert fired == {a.name for a in ops.alerts(bp, selector)}


@needs_promtool
@params
def test_promtool_unit_tests_fire_each_alert_and_none_when_healthy(
    name: str, tmp_path: Path
) -> None:
    bp, selector = _load(name)
    namespace = bp.target(EXAMPLES[name][1]).namespace
    rules = _write_rules(bp, selector, tmp_path)
    units = []
    for i, doc in enumerate(_unit_tests(bp, selector, namespace, rules)):
        units.append(tmp_path / f"{bp.name}.test{i}.yaml")
        units[-1].write_text(yaml.safe_dump(doc, sort_keys=False))
    done = _promtool("test", "rules", *units)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert (done.stdout + done.stderr).count("SUCCESS") == len(units)
