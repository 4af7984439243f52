"""The CLI through typer's CliRunner, and once as a real subprocess (no traceback, exit codes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmctl import __version__
from llmctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"
FAIL = ROOT / "tests" / "fixtures" / "rules" / "LLM-DATA-001" / "fail.yaml"
runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_check_ok_and_failing() -> None:
    ok = runner.invoke(app, ["check", str(HR)])
    assert ok.exit_code == 0, ok.output
    assert "ok" in ok.stdout
    bad = runner.invoke(app, ["check", str(FAIL)])
    assert bad.exit_code == 1
    assert f"{FAIL}:" in bad.stdout and "LLM-DATA-001" in bad.stdout


def test_check_json_and_github_formats() -> None:
    result = runner.invoke(app, ["check", "--format", "json", str(HR), str(FAIL)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [d["ok"] for d in data] == [True, False]
    problem = data[1]["problems"][0]
    assert {"file", "line", "col", "rule_id", "message", "severity", "json_path"} <= set(problem)
    gh = runner.invoke(app, ["check", "--format", "github", str(FAIL)])
    assert gh.stdout.startswith("::error file=") and "LLM-DATA-001" in gh.stdout


def test_check_strict_fails_on_warnings(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "blueprints" / "minimal.yaml").read_text())
    doc["network"] = {"auth": {"mode": "none", "allowAnonymous": True}}
    p = tmp_path / "anon.yaml"
    p.write_text(yaml.safe_dump(doc))
    assert runner.invoke(app, ["check", str(p)]).exit_code == 0
    strict = runner.invoke(app, ["check", "--strict", str(p)])
    assert strict.exit_code == 1 and "warning: anonymous access" in strict.stdout


def test_schema_prints_the_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["$id"].endswith("blueprint.schema.json")


def test_init_writes_a_blueprint_that_passes_check(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "claims-helper", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "claims-helper.yaml"
    assert path.read_text().startswith("# yaml-language-server: $schema=")
    assert runner.invoke(app, ["check", "--strict", str(path)]).exit_code == 0
    again = runner.invoke(app, ["init", "claims-helper", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in str(again.exception or again.output)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_subprocess_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = run_cli("check", str(FAIL))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = run_cli("init", "Bad Name", "--dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli("init", "Bad Name", "--dir", str(tmp_path), env={"LLMCTL_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_usage_error_exit_code() -> None:
    proc = run_cli("check")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


APP_ONLY = "import sys; from llmctl.cli.commands import main; sys.argv[0] = 'llmctl'; main()"


@pytest.mark.parametrize(
    "args",
    [
        ["check", str(HR)],
        ["check", str(FAIL)],
        ["check", "--format", "json", str(HR), str(FAIL)],
        ["check", "-f", "github", str(FAIL)],
        ["check", "--format=JSON", "--strict", str(HR)],
        ["check", "--", str(HR)],
        ["check", "no-such-file.yaml"],
    ],
)
def test_fast_path_matches_the_typer_command(args: list[str]) -> None:
    """`llmctl check` skips typer (llmctl/cli/fast.py); it must say exactly what typer's would."""
    from llmctl.cli.fast import parse_check

    assert parse_check(args[1:]) is not None  # these really take the fast path
    fast = run_cli(*args)
    full = subprocess.run(
        [sys.executable, "-c", APP_ONLY, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        full.returncode,
        full.stdout,
        full.stderr,
    )


@pytest.mark.parametrize(
    "rest", [[], ["--help"], ["--format"], ["--format", "xml", "x.yaml"], ["--quiet", "x.yaml"]]
)
def test_anything_unusual_goes_to_typer(rest: list[str]) -> None:
    from llmctl.cli.fast import parse_check, run_fast

    assert parse_check(rest) is None
    assert run_fast(["check", *rest]) is None
