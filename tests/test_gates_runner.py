"""The gate runner: order, skips with their reasons, timing and progress, without a stack.

``verify()`` runs for real on the paths that need no running stack (a blueprint that fails
``check``, no gateway running, a kubernetes target); the runner's own rules are also shown on
small stand-in gates after the real check gate.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmctl.cli import app
from llmctl.gates.results import FAILED, PASSED, SKIPPED, GateResult, VerifyResult
from llmctl.gates.runner import run_gates
from llmctl.gates.steps import GATE_ORDER, GATES, Gate, GateContext, check
from llmctl.gates.verify import verify

ROOT = Path(__file__).resolve().parent.parent
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"


@pytest.fixture
def no_stacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$LLMCTL_HOME``: no stack of any blueprint is running."""
    home = tmp_path / "home"
    monkeypatch.setenv("LLMCTL_HOME", str(home))
    return home


def _progress() -> tuple[list[tuple[str, str, float | None]], object]:
    events: list[tuple[str, str, float | None]] = []
    return events, lambda g, m, f: events.append((g, m, f))


def test_the_registry_is_the_documented_order() -> None:
    assert GATE_ORDER == ("check", "smoke", "load", "quality", "compliance")
    assert [g.needs for g in GATES] == [None, None, "smoke", "smoke", "smoke"]


def test_a_blueprint_that_fails_check_stops_the_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\n")
    events, say = _progress()
    result = verify(bad, report_dir=tmp_path / "r", on_progress=say)
    assert [g.name for g in result.gates] == list(GATE_ORDER)
    assert result.gates[0].status == FAILED and result.failed == ["check"]
    for g in result.gates[1:]:
        assert (g.status, g.message) == (
            SKIPPED,
            "not run: the blueprint does not pass `llmctl check`",
        )
        assert g.seconds == 0.0
    assert {e[0] for e in events} == {"check"}  # the later gates are not announced
    assert not (tmp_path / "r" / "evidence").exists()
    assert json.loads((tmp_path / "r" / "verify.json").read_text())["failed"] == ["check"]


def test_no_running_stack_fails_smoke_and_skips_the_live_gates(tmp_path: Path, no_stacks) -> None:
    events, say = _progress()
    result = verify(HR, report_dir=tmp_path / "r", junit=tmp_path / "j.xml", on_progress=say)
    status = {g.name: (g.status, g.message) for g in result.gates}
    assert status["check"][0] == PASSED
    assert status["smoke"][0] == FAILED and "no gateway is running" in status["smoke"][1]
    assert status["load"] == status["quality"] == (SKIPPED, "not run: the smoke gate failed")
    assert status["compliance"] == (SKIPPED, "not run: no live evidence (the smoke gate failed)")
    finals = [(g, m) for g, m, f in events if f == 1.0]
    assert [g for g, _ in finals] == list(GATE_ORDER)
    assert finals[2] == ("load", "skipped: not run: the smoke gate failed")
    # the compliance gate keeps the (empty) evidence even when skipped
    assert (tmp_path / "r" / "evidence" / "responses.jsonl").read_text() == ""
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert (root.get("failures"), root.get("skipped")) == ("1", "3")


def test_a_kubernetes_target_without_an_endpoint_says_to_pass_url(
    tmp_path: Path, no_stacks
) -> None:
    result = verify(HR, "prod", report_dir=tmp_path / "r")
    smoke = result.gate("smoke")
    assert smoke is not None and smoke.status == "error"
    assert "no gateway endpoint is known: pass --url" in smoke.message


def test_cli_exit_code_is_1_when_a_gate_fails(tmp_path: Path, no_stacks) -> None:
    out = CliRunner().invoke(app, ["verify", str(HR), "--report", str(tmp_path / "r")])
    assert out.exit_code == 1
    assert (
        "failed: smoke, load" not in out.output
    )  # load/quality/compliance are skipped, not failed
    assert "failed: smoke" in out.output


def _ctx(tmp_path: Path) -> tuple[GateContext, list[tuple[str, str, float | None]]]:
    events, say = _progress()
    result = VerifyResult("hr", str(HR), "local")
    ctx = GateContext(
        blueprint_path=HR, target="local", report_dir=tmp_path, result=result, say=say
    )
    return ctx, events


def test_prerequisites_skips_and_hooks(tmp_path: Path) -> None:
    ran: list[str] = []

    def gate(name: str, status: str):
        def run(ctx: GateContext) -> GateResult:
            ran.append(name)
            return GateResult(name, status, f"{name} {status}")

        return run

    gates = [
        Gate(check.NAME, check.run),
        Gate("a", gate("a", FAILED)),
        Gate(
            "b", gate("b", PASSED), needs="a", unmet="a failed", on_skip=lambda c: ran.append("b?")
        ),
        Gate("c", gate("c", SKIPPED)),
        Gate("d", gate("d", PASSED), needs="c", unmet="c failed"),
    ]
    ctx, events = _ctx(tmp_path)
    run_gates(ctx, gates)
    assert ran == ["a", "b?", "c", "d"]  # a skipped prerequisite counts as met
    b = ctx.result.gate("b")
    assert b is not None and (b.status, b.message) == (SKIPPED, "not run: a failed")
    assert ctx.result.blueprint == "hr-policy-assistant" and ctx.questions and ctx.doc_acls
    assert [(g, m) for g, m, f in events if f == 1.0][1:] == [
        ("a", "failed: a failed"),
        ("b", "skipped: not run: a failed"),
        ("c", "skipped: c skipped"),
        ("d", "passed: d passed"),
    ]
    assert all(g.seconds >= 0.0 for g in ctx.result.gates)
