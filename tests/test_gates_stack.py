"""``llmctl verify`` against the real local stack: Triton (SmolLM2 through llama.cpp, MiniLM),
the gateway as a supervised process, the hr-policy corpus ingested through Triton's embedder.

One verify run with a short profile (2 users, 10 s, 6 evaluation questions) must pass and exit 0;
an impossible threshold must exit 1 with the JUnit file naming the load gate; and violations
planted in the recorded evidence (an audit record removed, a citation stripped, a restricted
document exposed) must fail the matching compliance check. The gateway has no test-only switch to
leak a chunk, and should not have one, so the leak is planted in the evidence the check reads.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from blueprint_paths import absolute_paths

from llmctl.blueprint import load_blueprint
from llmctl.gates import compliance
from llmctl.gates.verify import load_evidence, verify

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINT = ROOT / "blueprints" / "hr-policy-assistant.yaml"
SHORT = {
    "users": 2,
    "spawnRate": 2,
    "durationS": 10,
    "p95LatencyMs": 120000,
    "p95TtftMs": 60000,
    "maxErrorRate": 0.01,
    "minThroughputRps": 0.01,
}


def short_blueprint(tmp: Path, name: str, **load_overrides: float) -> Path:
    """The example blueprint with absolute paths and a short local load profile."""
    doc = yaml.safe_load(BLUEPRINT.read_text())
    absolute_paths(doc, BLUEPRINT.parent)
    q = doc["gates"]["quality"]
    q["baseline"] = str(tmp / "baseline.json")
    q["minCitationAccuracy"] = (
        0.0  # six questions on a 135M model: gate the mechanism, not the score
    )
    q["minRecallAtK"] = 0.0
    doc["targets"]["local"]["gates"] = {"load": {**SHORT, **load_overrides}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def verify_stack(stack_dirs, tmp_path_factory):
    """The blueprint's own local stack with the gateway, and its index ingested through Triton."""
    from llmctl.gateway.component import gateway_factory
    from llmctl.local.spec import local_spec_from_blueprint
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.ingest import ingest
    from llmctl.targets.local import LocalTarget

    tmp = tmp_path_factory.mktemp("verify")
    bp = load_blueprint(short_blueprint(tmp, "base"))
    spec = local_spec_from_blueprint(bp).with_changes(startup_timeout_s=600.0)
    target = LocalTarget(
        spec, home=stack_dirs.home, cache=stack_dirs.cache, extra_components=(gateway_factory(bp),)
    )
    try:
        target.apply()
        embedder = TritonEmbedder(target.endpoints()["triton_grpc"])
        try:
            report = ingest(bp, embedder, target.state_dir / "index")
        finally:
            embedder.close()
        assert report.ok, report
        yield tmp, target
    finally:
        target.destroy()


@pytest.fixture(scope="module")
def passing_run(verify_stack):
    tmp, _ = verify_stack
    bp_path = short_blueprint(tmp, "pass")
    result = verify(
        bp_path,
        "local",
        report_dir=tmp / "report",
        junit=tmp / "junit.xml",
        eval_limit=6,
        update_baseline=True,
    )
    return tmp, bp_path, result


def test_passing_gates_exit_0(passing_run) -> None:
    from typer.testing import CliRunner

    from llmctl.cli import app

    tmp, bp_path, result = passing_run
    assert result.ok, json.dumps(result.to_dict(), indent=1, default=str)[:4000]
    assert [g.name for g in result.gates] == ["check", "smoke", "load", "quality", "compliance"]
    load_fig = result.gate("load").figures
    assert load_fig["requests"] > 0 and load_fig["p95_ttft_ms"] is not None
    assert (tmp / "report" / "index.html").is_file() and (tmp / "baseline.json").is_file()
    assert ET.parse(tmp / "junit.xml").getroot().get("failures") == "0"
    # the CLI maps the same run to exit 0 (a second short run, same questions, now against the stored baseline)
    res = CliRunner().invoke(
        app,
        [
            "verify",
            str(bp_path),
            "--eval-limit",
            "6",
            "--report",
            str(tmp / "cli"),
            "--output",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output[-3000:]


def test_impossible_threshold_exits_1_and_junit_names_the_gate(verify_stack) -> None:
    from typer.testing import CliRunner

    from llmctl.cli import app

    tmp, _ = verify_stack
    bp_path = short_blueprint(tmp, "impossible", p95LatencyMs=1)
    junit = tmp / "impossible.xml"
    res = CliRunner().invoke(
        app,
        [
            "verify",
            str(bp_path),
            "--eval-limit",
            "2",
            "--junit",
            str(junit),
            "--report",
            str(tmp / "imp"),
        ],
    )
    assert res.exit_code == 1, res.output[-3000:]
    root = ET.parse(junit).getroot()
    failed = [
        (suite.get("name").rsplit(".", 1)[-1], case.get("name"))
        for suite in root.iter("testsuite")
        for case in suite.iter("testcase")
        if case.find("failure") is not None
    ]
    assert ("load", "p95_latency_ms") in failed


def _rejudge(tmp: Path, bp_path: Path, evidence: Path) -> set[str]:
    bp = load_blueprint(bp_path)
    ev = load_evidence(evidence, bp.gates_for("local").load)
    result = compliance.check_compliance(bp, bp.target("local"), ev)
    return {c.name for c in result.checks if c.passed is False}


def test_planted_violations_fail_the_matching_check(passing_run, tmp_path: Path) -> None:
    tmp, bp_path, result = passing_run
    evidence = Path(result.report_dir) / "evidence"
    assert _rejudge(tmp, bp_path, evidence) == set()
    responses = compliance.read_jsonl(evidence / "responses.jsonl")
    original = (evidence / "responses.jsonl").read_text()
    ev_doc = json.loads((evidence / "evidence.json").read_text())
    audit = Path(ev_doc["audit_file"])

    # 1. an audit record removed (on a copy of the gateway's audit file)
    answered = next(r for r in responses if r.get("outcome") == "answered")
    copy = tmp_path / "audit.jsonl"
    copy.write_text(
        "".join(
            line
            for line in audit.read_text().splitlines(keepends=True)
            if answered["request_id"] not in line
        )
    )
    planted = dict(ev_doc, audit_file=str(copy))
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "evidence.json").write_text(json.dumps(planted))
    assert "audit.one-record-per-request" in _rejudge(tmp, bp_path, tmp_path / "ev")

    try:
        # 2. a citation stripped from one answer
        stripped = [dict(r, citations=[]) if r is answered else r for r in responses]
        compliance.write_responses(evidence / "responses.jsonl", stripped)
        assert "citations.every-answer-cited" in _rejudge(tmp, bp_path, evidence)

        # 3. a restricted document exposed to the probe user
        probe = next(r for r in responses if r.get("source") == "probe")
        leaked = [
            dict(r, citations=["hr/salary-bands-2026"]) if r is probe else r for r in responses
        ]
        compliance.write_responses(evidence / "responses.jsonl", leaked)
        failed = _rejudge(tmp, bp_path, evidence)
        assert {"access-control.probe-user", "access-control.every-response"} <= failed
    finally:
        (evidence / "responses.jsonl").write_text(original)
