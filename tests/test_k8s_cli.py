"""``llmctl render`` and ``llmctl plan`` from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("pulumi_kubernetes")

from llmctl.cli import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = str(ROOT / "blueprints" / "support-chatbot.yaml")


def test_render_writes_valid_manifests(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    result = CliRunner().invoke(
        app, ["render", BLUEPRINT, "--target", "coreweave", "--out", str(out), "--output", "json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["errors"] == []
    assert (out / "kustomization.yaml").exists()
    assert (out / "deployment--support-chatbot-triton.yaml").exists()


def test_render_refuses_a_local_target(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["render", BLUEPRINT, "--target", "local", "--out", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "not kubernetes" in str(result.exception)


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="the Pulumi CLI is installed here")
def test_plan_without_the_cli_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["plan", BLUEPRINT, "--target", "coreweave"])
    assert result.exit_code != 0
    assert "Pulumi CLI is not installed" in str(result.exception)
