"""The on-call runbook of both example blueprints: its sections, every alert with its anchor, the
target's names, and the committed HR runbook being exactly what ``llmctl runbook`` writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmctl.blueprint import load_blueprint
from llmctl.cli import app
from llmctl.ops import alerts as ops
from llmctl.ops.runbook import render_runbook

ROOT = Path(__file__).resolve().parents[1]
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"
SUPPORT = ROOT / "blueprints" / "support-chatbot.yaml"
COMMITTED = ROOT / "docs" / "runbooks" / "hr-policy-assistant.md"
CASES = [(HR, "local"), (HR, "prod"), (SUPPORT, "local"), (SUPPORT, "coreweave")]
SECTIONS = (
    "## Service",
    "## Endpoints",
    "## SLOs and error budgets",
    "## Dashboards",
    "## Alerts",
    "## Roll back",
    "## Back up and restore",
    "## Data residency and retention",
)
runner = CliRunner()


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize(("path", "target"), CASES, ids=lambda v: getattr(v, "stem", v))
def test_sections_alerts_and_anchors(path: Path, target: str) -> None:
    bp = load_blueprint(path)
    text = render_runbook(bp, target)
    positions = [text.index(s + "\n") for s in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    anchors = _anchors(text)
    for rule in ops.rule_groups(bp, ops.series_selector(bp, target))[1]["rules"]:
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert f"\n### {rule['alert']}\n" in text
        assert anchor in anchors, rule["alert"]
        assert f"[{rule['alert']}](#{anchor})" in text
    section = text.split("\n### LlmctlBackendCircuitOpen\n", 1)[1].split("\n## ", 1)[0]
    assert "**What it means.**" in section and "**What to check**" in section
    assert "**What to do**" in section and "```promql" in section
    assert all(link in anchors for link in re.findall(r"\]\(#([\w-]+)\)", text))
    assert "{{" not in text and "{status}" not in text, "a placeholder was left unfilled"
    assert f"**Owner:** {bp.metadata.owner}" in text
    for verb in ("status", "ask", "audit verify" if target == "local" else "up", "up"):
        assert f'llmctl {verb} "$BLUEPRINT"' in text
    assert f'llmctl backup "$BLUEPRINT" --to DIR -t {target}' in text
    assert f'llmctl restore "$BLUEPRINT" --from DIR -t {target}' in text
    assert "`llmctl rollback` is not available yet" in text
    assert f"uid `llmctl-{bp.name}`" in text
    assert f"retentionDays):** {bp.requirements.audit.retention_days} days" in text
    assert "includeQuestionText: false" in text


def test_error_budgets_in_minutes_per_30_days() -> None:
    hr = render_runbook(load_blueprint(HR), "local")
    # 0.5% of 43,200 minutes; 1%; the 5% a p95 leaves
    assert "| 0.5% of requests | 216 min |" in hr and "| 1% of requests | 432 min |" in hr
    assert "| 5% of requests | 2,160 min |" in hr
    support = render_runbook(load_blueprint(SUPPORT), "local")
    assert "| 0.1% of requests | 43 min |" in support
    assert "| 0.5% of requests | 216 min |" in support


def test_residency_and_retention_obligations() -> None:
    hr = render_runbook(load_blueprint(HR), "local")
    assert "**Residency (dataResidency):** private" in hr and "about 7 years" in hr
    support = render_runbook(load_blueprint(SUPPORT), "coreweave")
    assert "region: data stays in us-east" in support and "365 days" in support
    assert "soc2" in support


def test_local_endpoints_say_where_to_find_them() -> None:
    text = render_runbook(load_blueprint(HR), "local")
    assert 'llmctl status "$BLUEPRINT" -t local' in text
    assert "$LLMCTL_HOME/hr-policy-assistant/local/stack.json" in text
    assert "$LLMCTL_HOME/hr-policy-assistant/local/logs/gateway.log" in text
    assert "kubectl" not in text


def test_kubernetes_endpoints_are_the_rendered_objects() -> None:
    pytest.importorskip("pulumi")
    from llmctl.k8s.render import render
    from llmctl.targets.kubernetes import resolve_spec

    bp = load_blueprint(SUPPORT)
    spec = resolve_spec(bp, "coreweave")
    text = render_runbook(bp, "coreweave")
    manifests = render(spec).manifests
    services = [m["metadata"]["name"] for m in manifests if m["kind"] == "Service"]
    assert services and all(f"`{name}`" in text for name in services)
    [ingress] = [m for m in manifests if m["kind"] == "Ingress"]
    assert f"`https://{ingress['spec']['rules'][0]['host']}`" in text
    [dashboard] = [m for m in manifests if m["metadata"]["name"].endswith("-dashboard")]
    assert f"`{dashboard['metadata']['name']}`" in text
    assert f"kubectl -n {spec.namespace} logs deploy/support-chatbot-gateway" in text
    # no Prometheus operator on that cluster: the runbook says no rules are deployed
    assert "none deployed (this target has no Prometheus operator)" in text
    prod = render_runbook(load_blueprint(HR), "prod")
    assert "PrometheusRule `hr-policy-assistant-alerts`" in prod
    assert "--context prod-eu-1" in prod


def test_cli_prints_or_writes_the_runbook(tmp_path: Path) -> None:
    printed = runner.invoke(app, ["runbook", str(HR)])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == render_runbook(load_blueprint(HR), "local")
    out = tmp_path / "deep" / "runbook.md"
    wrote = runner.invoke(
        app, ["runbook", str(SUPPORT), "--target", "coreweave", "--out", str(out)]
    )
    assert wrote.exit_code == 0, wrote.output
    assert out.read_text(encoding="utf-8") == render_runbook(load_blueprint(SUPPORT), "coreweave")
    bad = runner.invoke(app, ["runbook", str(HR), "-t", "nope"])
    assert bad.exit_code != 0


def test_committed_hr_runbook_is_what_the_command_writes(tmp_path: Path) -> None:
    out = tmp_path / "hr.md"
    done = runner.invoke(app, ["runbook", str(HR), "--target", "local", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert COMMITTED.read_text(encoding="utf-8") == out.read_text(encoding="utf-8"), (
        "docs/runbooks/hr-policy-assistant.md is stale: regenerate it with "
        "`llmctl runbook blueprints/hr-policy-assistant.yaml -t local "
        "--out docs/runbooks/hr-policy-assistant.md`"
    )
