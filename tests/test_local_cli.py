"""The stack verbs through the CLI on the starter blueprint (``llmctl init``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmctl.cli import app
from llmctl.errors import LlmctlError
from llmctl.starter import write_starter

runner = CliRunner()


@pytest.fixture
def blueprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCTL_CACHE", str(tmp_path / "cache"))
    path = write_starter("cli-stack", tmp_path)
    (tmp_path / "docs" / "hello.md").write_text("# Hello\nThe local stack works.\n")
    return path


def test_build_twice_second_does_nothing(blueprint):
    first = runner.invoke(app, ["build", str(blueprint)])
    assert first.exit_code == 0, first.output
    assert "built" in first.output and "tensorrt_llm" in first.output and "embedder" in first.output
    second = runner.invoke(app, ["build", str(blueprint), "--output", "json"])
    assert second.exit_code == 0, second.output
    rows = json.loads(second.output)["models"]
    assert {r["model"] for r in rows} == {"tensorrt_llm", "embedder"}
    assert not any(r["built"] for r in rows)
    third = runner.invoke(app, ["build", str(blueprint)])
    assert "nothing to do" in third.output


def test_unknown_target_is_a_clear_error(blueprint):
    result = runner.invoke(app, ["up", str(blueprint), "--target", "prod", "-y"])
    assert isinstance(result.exception, LlmctlError)
    assert "no target 'prod'" in str(result.exception)


def test_status_of_a_stack_never_started(blueprint):
    result = runner.invoke(app, ["status", str(blueprint), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["state"] == "stopped"


@pytest.mark.stack
def test_up_status_down(blueprint):
    up = runner.invoke(app, ["up", str(blueprint), "-y"])
    try:
        assert up.exit_code == 0, up.output
        assert "triton_grpc" in up.output and "smoke test" in up.output
        again = runner.invoke(app, ["up", str(blueprint)])  # no -y needed: nothing to change
        assert again.exit_code == 0 and "no changes" in again.output
        status = runner.invoke(app, ["status", str(blueprint), "--output", "json"])
        assert status.exit_code == 0, status.output
        doc = json.loads(status.output)
        assert doc["state"] == "running"
        assert {m["name"] for m in doc["models"]} == {"tensorrt_llm", "embedder"}
    finally:
        down = runner.invoke(app, ["down", str(blueprint)])
    assert down.exit_code == 0 and "is down" in down.output
    after = runner.invoke(app, ["status", str(blueprint), "--output", "json"])
    assert json.loads(after.output)["state"] == "stopped"
