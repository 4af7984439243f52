"""Gate logic on recorded figures: thresholds, baseline regression, compliance evidence, JUnit.

No stack, no Locust, no wall-clock thresholds: every input is a recorded figure or file.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from llmctl.blueprint import load_blueprint
from llmctl.gates import compliance, load, quality
from llmctl.gates.junit import to_junit, write_junit
from llmctl.gates.report import write_reports
from llmctl.gates.results import Check, GateResult, VerifyResult

ROOT = Path(__file__).resolve().parent.parent
BP = ROOT / "blueprints" / "hr-policy-assistant.yaml"


@pytest.fixture(scope="module")
def bp():
    return load_blueprint(BP)


def _samples() -> list[dict]:
    out = []
    for i in range(20):
        out.append({"kind": "ASK", "t": i * 0.5, "ms": 1000.0 + 100 * i, "ok": True})
        out.append({"kind": "TTFT", "t": i * 0.5, "ms": 200.0 + 10 * i, "ok": True})
        out.append({"kind": "ITL", "t": i * 0.5, "ms": 40.0, "ok": True})
        out.append({"kind": "TPS", "t": i * 0.5, "ms": 25.0, "ok": True})
    out.append({"kind": "ASK", "t": 10.0, "ms": 30.0, "ok": False})
    return out


# -- load --------------------------------------------------------------------------------------
def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert load.percentile(values, 0.95) == 95
    assert load.percentile(values, 0.5) == 50
    assert load.percentile([7.0], 0.95) == 7.0
    assert load.percentile([], 0.95) is None


def test_figures_from_samples() -> None:
    f = load.figures_from_samples(_samples(), duration_s=10.0, users=2, spawn_rate=1)
    assert f["requests"] == 21 and f["failures"] == 1
    assert f["error_rate"] == pytest.approx(1 / 21)
    assert f["throughput_rps"] == pytest.approx(2.0)
    assert f["p95_latency_ms"] == 2800.0  # failures are not latencies
    assert f["p95_ttft_ms"] == 380.0
    assert f["mean_output_tps"] == 25.0


def test_load_thresholds(bp) -> None:
    gate = bp.gates_for("local").load
    figures = load.figures_from_samples(_samples()[:-1], 10.0, 2, 1)
    result = load.load_gate({"figures": figures}, gate)
    assert result.status == "passed", result.message
    impossible = replace(gate, p95_latency_ms=1.0, min_throughput_rps=100.0)
    result = load.load_gate({"figures": figures}, impossible)
    assert result.status == "failed"
    failed = {c.name for c in result.checks if c.passed is False}
    assert failed == {"p95_latency_ms", "throughput_rps"}
    errors = load.load_gate({"figures": load.figures_from_samples(_samples(), 10.0, 2, 1)}, gate)
    assert {c.name for c in errors.checks if c.passed is False} == {"error_rate"}


def test_nothing_measured_fails(bp) -> None:
    figures = load.figures_from_samples([], 10.0, 1, 1)
    result = load.load_gate({"figures": figures}, bp.gates_for("local").load)
    assert result.status == "failed"
    assert load.load_gate(None, bp.gates_for("local").load, "boom").status == "error"


def test_target_overrides_reach_the_gate(bp) -> None:
    assert bp.gates_for("local").load.users == 4
    assert bp.gates_for(None).load.users == 64


# -- quality -----------------------------------------------------------------------------------
QUESTIONS = [
    {
        "id": "a1",
        "kind": "answerable",
        "asker_groups": ["all"],
        "expected_docs": ["d/a"],
        "expected_answer_contains": "25",
    },
    {"id": "a2", "kind": "answerable", "asker_groups": ["all"], "expected_docs": ["d/b"]},
    {
        "id": "r1",
        "kind": "restricted",
        "asker_groups": ["all"],
        "expected_docs": [],
        "restricted_docs": ["d/secret"],
    },
]
ACLS = {"d/a": ["all"], "d/b": ["all"], "d/secret": ["finance"], "d/other-secret": ["hr"]}


def _resp(cited, status=200, answer="") -> dict:
    return {
        "status": status,
        "citations": cited,
        "answer": answer,
        "outcome": "answered" if cited else "no_source",
    }


def test_quality_scores() -> None:
    f = quality.score(
        QUESTIONS, [_resp(["d/a"], answer="25 days"), _resp(["d/a", "d/b"]), _resp([])], ACLS
    )
    assert f["recall_at_k"] == 1.0
    assert f["citation_accuracy"] == 0.5
    assert f["refusal_correctness"] == 1.0
    assert f["answer_match"] == 0.5
    leak = quality.score(
        QUESTIONS, [_resp(["d/a"]), _resp(["d/b"]), _resp(["d/other-secret"])], ACLS
    )
    assert (
        leak["refusal_correctness"] == 0.0
    )  # any unreadable document counts, not only the listed one


def _regression_only_gate(bp):
    """The local quality gate with no absolute minimums: only the baseline comparison can fail."""
    return replace(
        bp.gates_for("local").quality,
        min_recall_at_k=0.0,
        min_citation_accuracy=0.0,
        max_regression=0.05,
    )


def test_baseline_regression(bp, tmp_path: Path) -> None:
    gate = _regression_only_gate(bp)
    path = tmp_path / "baseline.json"
    good = {
        "recall_at_k": 0.9,
        "citation_accuracy": 0.8,
        "refusal_correctness": 1.0,
        "restricted": 1,
        "questions": 3,
    }
    quality.write_baseline(path, good, eval_hash="x", blueprint_hash="y")
    baseline = quality.read_baseline(path)
    assert quality.quality_gate(dict(good, recall_at_k=0.86), gate, baseline).status == "passed"
    worse = quality.quality_gate(dict(good, recall_at_k=0.8), gate, baseline)
    assert worse.status == "failed"
    assert [c.name for c in worse.checks if c.passed is False] == ["regression.recall_at_k"]
    first = quality.quality_gate(good, gate, None)
    assert first.status == "passed" and any(
        c.name == "baseline" and c.passed is None for c in first.checks
    )


def test_short_run_is_compared_with_the_same_questions(bp, tmp_path: Path) -> None:
    """A --eval-limit run is judged against the baseline's results for the questions it asked."""
    gate = _regression_only_gate(bp)
    questions = [
        {"id": "easy", "kind": "answerable", "expected_docs": ["d/a"]},
        {"id": "hard", "kind": "answerable", "expected_docs": ["d/b"]},
        {"id": "secret", "kind": "restricted", "restricted_docs": ["d/s"], "asker_groups": ["x"]},
    ]
    # the full run: "hard" was never retrieved, so the whole-set recall is 0.5
    full = quality.score(questions, [_resp(["d/a"]), _resp(["d/z"]), _resp([])], ACLS)
    path = tmp_path / "baseline.json"
    quality.write_baseline(path, full, eval_hash="x", blueprint_hash="y")
    baseline = quality.read_baseline(path)
    assert baseline["metrics"]["recall_at_k"] == 0.5
    # a short run over "easy" alone that loses it is measured against that question's 1.0 ...
    lost = quality.score(questions[:1], [_resp(["d/z"])], ACLS)
    result = quality.quality_gate(lost, gate, baseline)
    assert result.status == "failed"
    assert result.figures["baseline"]["recall_at_k"] == 1.0
    # ... and a short run over "hard" alone that still misses it is no regression (against the
    # whole set's 0.5 it would have looked like a drop of 0.5 and failed)
    same = quality.score(questions[1:2], [_resp(["d/z"])], ACLS)
    assert quality.quality_gate(same, gate, baseline).status == "passed"


def test_select_keeps_both_kinds() -> None:
    qs = [{"id": f"a{i}", "kind": "answerable"} for i in range(10)] + [
        {"id": f"r{i}", "kind": "restricted"} for i in range(4)
    ]
    picked = quality.select(qs, 4)
    assert len(picked) == 4 and {q["kind"] for q in picked} == {"answerable", "restricted"}


def test_eval_set_of_the_example_loads(bp) -> None:
    qs = quality.load_eval_set(bp.resolve_path(bp.gates_for("local").quality.eval_set))
    assert {q["kind"] for q in qs} == {"answerable", "restricted"}


# -- compliance ----------------------------------------------------------------------------------
def _audit(rid: str, user: str, cited: list[str]) -> dict:
    return {
        "request_id": rid,
        "time": "t",
        "endpoint": "ask",
        "outcome": "answered",
        "status": 200,
        "subject": user,
        "groups": ["all"],
        "question_hmac": "h",
        "question_key_id": "k",
        "cited_doc_ids": cited,
        "cited_chunks": [],
        "blueprint_hash": "b",
        "engine_hash": "",
        "index_hash": "i",
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "latency_ms": 1.0,
    }


def _evidence(tmp_path: Path, bp, responses: list[dict], audit: list[dict]) -> compliance.Evidence:
    rf = tmp_path / "responses.jsonl"
    compliance.write_responses(rf, responses)
    af = tmp_path / "audit.jsonl"
    af.write_text("".join(json.dumps(a) + "\n" for a in audit))
    figures = load.figures_from_samples(_samples()[:-1], 10.0, 2, 1)
    return compliance.Evidence(
        responses_file=rf,
        audit_file=af,
        listeners={"triton": ["127.0.0.1:8000"], "gateway": ["127.0.0.1:9000"]},
        endpoints={"triton_url": "http://127.0.0.1:8000"},
        load_figures=figures,
        load_thresholds=bp.gates_for("local").load,
        doc_acls=ACLS,
    )


def _good(tmp_path: Path, bp) -> compliance.Evidence:
    responses = [
        {
            "request_id": "r1",
            "user": "u1",
            "groups": ["all"],
            "outcome": "answered",
            "citations": ["d/a"],
            "status": 200,
        },
        {
            "request_id": "r2",
            "user": "p",
            "groups": ["all"],
            "outcome": "no_source",
            "citations": [],
            "status": 200,
            "source": "probe",
        },
    ]
    return _evidence(
        tmp_path,
        bp,
        responses,
        [_audit("r1", "u1", ["d/a"]), dict(_audit("r2", "p", []), outcome="no_source")],
    )


def _failed(result: GateResult) -> set[str]:
    return {c.name for c in result.checks if c.passed is False}


def test_compliance_passes_on_good_evidence(bp, tmp_path: Path) -> None:
    result = compliance.check_compliance(bp, bp.target("local"), _good(tmp_path, bp))
    assert result.status == "passed", result.message
    names = {c.name for c in result.checks}
    assert {
        "residency.loopback-binds",
        "citations.every-answer-cited",
        "audit.one-record-per-request",
        "audit.fields-complete",
        "access-control.probe-user",
        "slo.latency_p95_ms",
    } <= names


def test_compliance_planted_violations(bp, tmp_path: Path) -> None:
    ev = _good(tmp_path, bp)
    target = bp.target("local")
    # an audit record removed
    lines = ev.audit_file.read_text().splitlines(keepends=True)
    ev.audit_file.write_text(lines[1])
    assert "audit.one-record-per-request" in _failed(compliance.check_compliance(bp, target, ev))
    ev.audit_file.write_text("".join(lines))
    # a citation stripped from an answer
    rows = compliance.read_jsonl(ev.responses_file)
    compliance.write_responses(ev.responses_file, [dict(rows[0], citations=[]), rows[1]])
    failed = _failed(compliance.check_compliance(bp, target, ev))
    assert "citations.every-answer-cited" in failed
    # a restricted chunk exposed to the probe user
    compliance.write_responses(
        ev.responses_file, [rows[0], dict(rows[1], citations=["d/secret"], outcome="answered")]
    )
    failed = _failed(compliance.check_compliance(bp, target, ev))
    assert {"access-control.probe-user", "access-control.every-response"} <= failed
    # a component listening on every interface
    compliance.write_responses(ev.responses_file, rows)
    ev.listeners = {"triton": ["0.0.0.0:8000"], "gateway": ["127.0.0.1:9000"]}
    assert _failed(compliance.check_compliance(bp, target, ev)) == {"residency.loopback-binds"}


def test_egress_policy_evidence() -> None:
    deny = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    dns = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "dns"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}}]}],
        },
    }
    wide = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "out"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
        },
    }
    assert compliance.egress_denied([deny, dns])[0]
    assert not compliance.egress_denied([deny, wide])[0]
    assert not compliance.egress_denied([dns])[0]


def test_listening_sockets_of_this_process() -> None:
    import os
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        found = compliance.listening_sockets([os.getpid()])
        assert f"127.0.0.1:{s.getsockname()[1]}" in found
    finally:
        s.close()
    assert compliance.is_loopback("[::1]") and not compliance.is_loopback("0.0.0.0")


# -- reports -------------------------------------------------------------------------------------
def _result() -> VerifyResult:
    r = VerifyResult("hr", "bp.yaml", "local", started_at="now")
    r.gates.append(GateResult.from_checks("check", [Check("blueprint", True, "ok")]))
    r.gates.append(
        GateResult.from_checks(
            "load",
            [Check("p95_latency_ms", False, "p95 2 s > 1 s", 2000, 1000)],
            {"duration_s": 10},
        )
    )
    r.gates.append(
        GateResult.from_checks(
            "compliance",
            [Check("audit.one-record-per-request", True, "ok", evidence="audit JSONL")],
        )
    )
    return r


def test_junit_structure(tmp_path: Path) -> None:
    r = _result()
    assert not r.ok and r.failed == ["load"]
    root = to_junit(r)
    assert root.get("tests") == "3" and root.get("failures") == "1"
    suites = {s.get("name").rsplit(".", 1)[-1]: s for s in root.iter("testsuite")}
    assert set(suites) == {"check", "load", "compliance"}
    failure = suites["load"].find("testcase/failure")
    assert failure is not None and "p95" in failure.get("message")
    path = write_junit(r, tmp_path / "junit.xml")
    assert ET.parse(path).getroot().tag == "testsuites"


def test_reports_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = write_reports(_result(), tmp_path, _samples())
    assert json.loads(paths["json"].read_text())["failed"] == ["load"]
    html = paths["html"].read_text()
    assert "Requirements and their evidence" in html and "latency-histogram.png" in html
    assert (tmp_path / "latency-over-time.png").stat().st_size > 0


def test_egress_to_the_kubernetes_api_is_not_data_egress_only_when_it_is_exactly_that() -> None:
    from llmctl.gates.compliance.residency import egress_denied

    deny = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }

    def api(cidr: str = "10.0.0.0/8", port: int = 443, marked: bool = True) -> dict:
        notes = {"llmctl.dev/egress-purpose": "kubernetes-api"} if marked else {}
        return {
            "kind": "NetworkPolicy",
            "metadata": {"name": "backup-to-apiserver", "annotations": notes},
            "spec": {
                "podSelector": {"matchLabels": {"app": "backup"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": cidr}}],
                        "ports": [{"protocol": "TCP", "port": port}],
                    }
                ],
            },
        }

    ok, message = egress_denied([deny, api()])
    assert ok and "reaches only the Kubernetes API server" in message
    for bad in (api(cidr="0.0.0.0/0"), api(port=80), api(marked=False), api(cidr="8.8.8.0/24")):
        assert egress_denied([deny, bad])[0] is False
