"""``verify()`` end to end against the real gateway app on a real uvicorn server, with the
hr-policy corpus indexed by a hashing embedder and the gateway tests' echoing stand-in LLM
(no Triton needed: seconds, not minutes). Every gate runs for real: Locust in its child process,
the evaluation set through HTTP, the probe user, the audit JSONL, the sockets in /proc.

The same flow against the real local stack (Triton, the gateway as a supervised process) is
test_gates_stack.py. The gateway has no switch to leak a chunk (and should not have one), so the
violations are planted in the recorded evidence the compliance gate reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from blueprint_paths import absolute_paths

if importlib.util.find_spec("locust") is None:  # find_spec: importing locust would gevent-patch us
    pytest.skip(reason="locust is not installed", allow_module_level=True)

from test_gateway_support import (  # noqa: E402
    EchoLLM,
    ServerThread,
    in_process_retriever,
    make_config,
    token,
)

from llmctl.blueprint import load_blueprint  # noqa: E402
from llmctl.gates import compliance  # noqa: E402
from llmctl.gates.verify import load_evidence, verify  # noqa: E402
from llmctl.gateway.app import create_app  # noqa: E402
from llmctl.gateway.config import LimitsConfig  # noqa: E402
from llmctl.retrieval.embedders import HashingEmbedder  # noqa: E402
from llmctl.retrieval.ingest import ingest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = ROOT / "blueprints" / "hr-policy-assistant.yaml"
SHORT = {
    "users": 2,
    "spawnRate": 2,
    "durationS": 4,
    "p95LatencyMs": 60000,
    "p95TtftMs": 60000,
    "maxErrorRate": 0.01,
    "minThroughputRps": 0.01,
}


def short_blueprint(tmp: Path, name: str, **load_overrides: float) -> Path:
    """The example blueprint with absolute paths, a short local load profile and quality minimums
    at 0 (a few questions answered by a stand-in: gate the mechanism, not the score)."""
    doc = yaml.safe_load(BLUEPRINT.read_text())
    absolute_paths(doc, BLUEPRINT.parent)
    q = doc["gates"]["quality"]
    q["baseline"] = str(tmp / "baseline.json")
    q["minCitationAccuracy"] = 0.0
    q["minRecallAtK"] = 0.0
    doc["targets"]["local"]["gates"] = {"load": {**SHORT, **load_overrides}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class InProcessStack:
    """What ``verify`` needs from a stack, for a gateway served by this test process."""

    def __init__(self, url: str, state: Path, triton_url: str) -> None:
        self.gateway_url = url
        self.triton_url = None
        self.state = state
        self.audit_file = state / "audit" / "audit.jsonl"
        self._triton = triton_url

    def token_for(self, user: str, groups: list[str]) -> str:
        return token(self.state, user, groups, ttl_s=3600)

    def endpoints(self) -> dict[str, str]:
        return {"triton_url": self._triton}

    def listeners(self) -> dict[str, list[str]]:
        return {"gateway": compliance.listening_sockets([os.getpid()])}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify-inproc")
    bp = load_blueprint(short_blueprint(tmp, "base"))
    embedder = HashingEmbedder()
    report = ingest(bp, embedder, tmp / "index")
    assert report.ok, report
    state = tmp / "state"
    limits = LimitsConfig(
        context_tokens=1024, max_input_tokens=900, max_output_tokens=24, min_score=0.0
    )
    config = make_config(state, index_dir=tmp / "index", limits=limits)
    app = create_app(config, retriever=in_process_retriever(tmp / "index", embedder), llm=EchoLLM())
    with ServerThread(app) as server:
        yield tmp, InProcessStack(server.url, state, config.triton_url)


@pytest.fixture(scope="module")
def passing(served):
    tmp, stack = served
    bp_path = short_blueprint(tmp, "pass")
    result = verify(
        bp_path,
        "local",
        report_dir=tmp / "report",
        junit=tmp / "junit.xml",
        eval_limit=6,
        update_baseline=True,
        stack=stack,
    )
    return tmp, bp_path, result


def test_all_gates_pass(passing) -> None:
    tmp, _, result = passing
    assert result.ok, json.dumps(result.to_dict(), indent=1, default=str)[:5000]
    assert [g.name for g in result.gates] == ["check", "smoke", "load", "quality", "compliance"]
    assert result.gate("load").figures["requests"] > 0
    q = result.gate("quality").figures
    assert q["questions"] == 6 and q["restricted"] > 0 and q["refusal_correctness"] == 1.0
    assert (
        json.loads((tmp / "baseline.json").read_text())["metrics"]["recall_at_k"]
        == q["recall_at_k"]
    )
    root = ET.parse(tmp / "junit.xml").getroot()
    assert root.get("failures") == "0" and int(root.get("tests")) > 10
    html = (tmp / "report" / "index.html").read_text()
    assert "latency-histogram.png" in html and "access-control.probe-user" in html


def test_impossible_threshold_fails_and_junit_names_the_gate(served) -> None:
    tmp, stack = served
    bp_path = short_blueprint(tmp, "impossible", p95LatencyMs=1)
    result = verify(
        bp_path, "local", report_dir=tmp / "imp", junit=tmp / "imp.xml", eval_limit=2, stack=stack
    )
    assert not result.ok and "load" in result.failed
    root = ET.parse(tmp / "imp.xml").getroot()
    failed = [
        (suite.get("name").rsplit(".", 1)[-1], case.get("name"))
        for suite in root.iter("testsuite")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    ]
    assert ("load", "p95_latency_ms") in failed and ("compliance", "slo.latency_p95_ms") in failed


def _rejudge(bp_path: Path, evidence: Path) -> set[str]:
    bp = load_blueprint(bp_path)
    ev = load_evidence(evidence, bp.gates_for("local").load)
    result = compliance.check_compliance(bp, bp.target("local"), ev)
    return {c.name for c in result.checks if c.passed is False}


def test_planted_violations(passing, tmp_path: Path) -> None:
    _, bp_path, result = passing
    evidence = Path(result.report_dir) / "evidence"
    assert _rejudge(bp_path, evidence) == set()
    responses = compliance.read_jsonl(evidence / "responses.jsonl")
    original = (evidence / "responses.jsonl").read_text()
    ev_doc = json.loads((evidence / "evidence.json").read_text())
    answered = next(r for r in responses if r.get("outcome") == "answered")

    # an audit record removed (from a copy of the gateway's audit file)
    audit = Path(ev_doc["audit_file"]).read_text().splitlines(keepends=True)
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(line for line in audit if answered["request_id"] not in line))
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "evidence.json").write_text(json.dumps(dict(ev_doc, audit_file=str(copy))))
    assert "audit.one-record-per-request" in _rejudge(bp_path, tmp_path / "ev")

    try:
        # a citation stripped from one answer
        stripped = [dict(r, citations=[]) if r is answered else r for r in responses]
        compliance.write_responses(evidence / "responses.jsonl", stripped)
        assert "citations.every-answer-cited" in _rejudge(bp_path, evidence)
        # a restricted document exposed to the probe user
        probe = next(r for r in responses if r.get("source") == "probe")
        leaked = [
            dict(r, citations=["hr/salary-bands-2026"]) if r is probe else r for r in responses
        ]
        compliance.write_responses(evidence / "responses.jsonl", leaked)
        assert {"access-control.probe-user", "access-control.every-response"} <= _rejudge(
            bp_path, evidence
        )
    finally:
        (evidence / "responses.jsonl").write_text(original)


def test_no_report_or_evidence_file_holds_a_bearer_token(passing) -> None:
    """Tokens live in memory (the load runner gets them over a pipe); the evidence keeps hashes."""
    tmp, _, _ = passing
    files = [p for p in (tmp / "report").rglob("*") if p.is_file()]
    assert any(p.name == "load-spec.json" for p in files)
    holding = [str(p) for p in files if b"eyJ" in p.read_bytes()]
    assert holding == []
    spec = json.loads(next(p for p in files if p.name == "load-spec.json").read_text())
    assert spec["identities"] and all(
        "token" not in i and len(i["token_sha256"]) == 16 for i in spec["identities"]
    )
