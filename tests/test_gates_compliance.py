"""Every compliance requirement has a passing and a failing evidence folder, and they behave.

``tests/fixtures/compliance/<requirement>/{pass,fail}/`` hold evidence as a verify run records
it: ``evidence.json`` (what ``save_evidence`` writes, with file names relative to the folder and
the rendered manifests in full), ``responses.jsonl`` and, where the requirement reads one, the
audit trail (``audit.jsonl`` and its rotated predecessors). ``fail/expected.json`` names the
checks that must fail. The requirement's own ``check`` runs on the files, judged against the
example blueprint (private residency, citations and audit required, retrieval with ACLs).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmctl.blueprint import load_blueprint
from llmctl.gates import compliance
from llmctl.gates.compliance import REQUIREMENTS, Requirement

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "compliance"
BY_ID = {r.id: r for r in REQUIREMENTS}


@pytest.fixture(scope="module")
def bp():
    return load_blueprint(ROOT / "blueprints" / "hr-policy-assistant.yaml")


def evidence_from(folder: Path, bp) -> compliance.Evidence:
    """``load_evidence`` on the folder, its file names taken relative to it, manifests in full."""
    ev = compliance.load_evidence(folder, bp.gates_for("local").load)
    doc = json.loads((folder / "evidence.json").read_text())
    return replace(
        ev,
        responses_file=folder / ev.responses_file,
        audit_file=folder / ev.audit_file if ev.audit_file else None,
        manifests=doc.get("manifests") or {},
    )


def judge(requirement: Requirement, folder: Path, bp) -> list[compliance.Check]:
    ctx = compliance.requirement_context(bp, bp.target("local"), evidence_from(folder, bp))
    assert requirement.applies(ctx), f"{requirement.id} does not apply to the example blueprint"
    checks = requirement.check(ctx)
    assert checks, f"{requirement.id} produced no check"
    for c in checks:
        assert c.name.split(".")[0] == requirement.id, c.name
        assert c.message
    return checks


def test_requirement_ids_are_unique_and_summarised() -> None:
    assert len(BY_ID) == len(REQUIREMENTS)
    assert all(r.summary for r in REQUIREMENTS)


def test_every_requirement_has_fixtures_and_no_orphans() -> None:
    assert sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) == sorted(BY_ID)
    for rid in BY_ID:
        assert (FIXTURES / rid / "pass" / "evidence.json").is_file()
        assert (FIXTURES / rid / "fail" / "expected.json").is_file()


@pytest.mark.parametrize("requirement_id", sorted(BY_ID))
@pytest.mark.parametrize("case", ["pass", "fail"])
def test_requirement_on_its_fixture(requirement_id: str, case: str, bp) -> None:
    folder = FIXTURES / requirement_id / case
    checks = judge(BY_ID[requirement_id], folder, bp)
    failed = {c.name for c in checks if c.passed is False}
    if case == "pass":
        assert failed == set(), [c.message for c in checks if c.passed is False]
        assert any(c.passed for c in checks)
    else:
        expected = set(json.loads((folder / "expected.json").read_text())["failed"])
        assert failed == expected, [c.message for c in checks]


def test_the_gate_runs_the_requirements_in_order(bp, tmp_path: Path) -> None:
    """``check_compliance`` = the applicable requirements' checks, in registry order."""
    ev = evidence_from(FIXTURES / "audit" / "pass", bp)
    ev = replace(ev, listeners={"gateway": ["127.0.0.1:9000"]}, doc_acls={"hr/annual-leave": ["x"]})
    result = compliance.check_compliance(bp, bp.target("local"), ev)
    order = list(dict.fromkeys(c.name.split(".")[0] for c in result.checks))
    assert order == [r.id for r in REQUIREMENTS]
    rows = result.figures["requirements"]
    assert [r["check"] for r in rows] == [c.name for c in result.checks]
    assert result.figures["responses"] == 2


def test_a_requirement_the_blueprint_does_not_ask_for_is_not_checked(bp) -> None:
    relaxed = replace(
        bp,
        requirements=replace(
            bp.requirements,
            citations="optional",
            audit=replace(bp.requirements.audit, required=False),
        ),
    )
    ev = evidence_from(FIXTURES / "citations" / "fail", bp)
    names = {c.name for c in compliance.check_compliance(relaxed, bp.target("local"), ev).checks}
    assert not any(n.startswith(("citations.", "audit.")) for n in names)
    assert "residency.no-external-endpoint" in names


def test_a_missing_audit_file_fails_the_audit_requirement(bp, tmp_path: Path) -> None:
    ev = replace(
        evidence_from(FIXTURES / "audit" / "pass", bp), audit_file=tmp_path / "absent.jsonl"
    )
    checks = judge(BY_ID["audit"], FIXTURES / "audit" / "pass", bp)
    assert all(c.passed for c in checks)
    ctx = compliance.requirement_context(bp, bp.target("local"), ev)
    [missing] = BY_ID["audit"].check(ctx)
    assert missing.name == "audit.one-record-per-request" and missing.passed is False
    assert "no audit file" in missing.message


def test_probe_check_passes_when_nothing_is_restricted_and_fails_when_something_is() -> None:
    """No probe request is fine only where no document is closed to the broadest groups."""
    open_acls = {"handbook/vacation": ["all-employees"]}
    (probe, _) = compliance.check_access([], open_acls, ["all-employees"])
    assert probe.passed and "nothing for a probe user to find" in probe.message
    closed = {**open_acls, "hr/salaries": ["hr-admins"]}
    (probe, _) = compliance.check_access([], closed, ["all-employees"])
    assert probe.passed is False and probe.message == "no probe request was made"


def test_without_restricted_questions_the_probe_asks_about_each_restricted_document(bp) -> None:
    from llmctl.gates.askers import probe_groups, probe_questions

    questions = probe_questions(bp, [])
    broad = probe_groups(bp)
    assert questions and all(q["asker_groups"] == broad for q in questions)
    assert all(
        q["kind"] == "restricted" and q["question"].startswith("What does") for q in questions
    )
    ids = {q["id"] for q in questions}
    assert "probe-hr/salary-bands-2026" in ids  # the HR-admins-only document of the demo
    asked = [{"id": "r1", "kind": "restricted", "question": "VP salary?"}]
    assert [q["id"] for q in probe_questions(bp, asked)] == ["r1"]
