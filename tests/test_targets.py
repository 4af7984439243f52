"""The target interface: one factory, one state owner, plans that write nothing.

No process starts here: ``plan`` on a stopped local stack and the kubernetes target's identity are
what these tests look at. The Pulumi CLI cannot be installed on these machines, so the two
kubernetes tests replace ``llmctl.k8s.pulumi_cli.outputs``/``destroy`` (the one module that runs
the CLI) with recorders; everything above that module runs for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from blueprint_paths import absolute_paths

from llmctl.blueprint import load_blueprint
from llmctl.errors import LlmctlError
from llmctl.state import StackState, llmctl_home
from llmctl.targets import Target, target_for

ROOT = Path(__file__).resolve().parents[1]
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _renamed_local(tmp_path: Path, name: str) -> Path:
    """The HR blueprint with its local target renamed, sources still pointing at the corpus."""
    doc = yaml.safe_load(HR.read_text())
    doc["targets"][name] = doc["targets"].pop("local")
    absolute_paths(doc, HR.parent)
    out = tmp_path / "renamed.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_home_is_absolute_and_expands_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCTL_HOME", "~/somewhere/../llmctl-home")
    home = llmctl_home()
    assert home.is_absolute() and "~" not in str(home) and ".." not in home.parts
    state = StackState.of("hr", "dev")
    assert state.dir == home / "hr" / "dev"
    assert state.index_dir == state.dir / "index"
    assert state.gateway_config == state.dir / "gateway" / "config.json"


def test_a_local_target_named_dev_keeps_its_state_under_dev(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    bp = load_blueprint(_renamed_local(tmp_path, "dev"))
    target = target_for(bp, "dev")
    assert isinstance(target, Target) and target.kind == "local" and target.name == "dev"
    assert target.state_dir == tmp_path / "home" / bp.name / "dev"


def test_local_plan_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning a stopped stack with a gateway: no key, no config, no port file, no folder."""
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCTL_CACHE", str(tmp_path / "cache"))
    bp = load_blueprint(HR)
    plan = target_for(bp, "local").plan()
    assert plan.changed
    verbs = {(a.verb, a.subject) for a in plan.actions}
    assert ("start", "triton") in verbs and ("start", "gateway") in verbs
    assert _files(tmp_path / "home") == []
    assert plan.to_dict()["target"] == "local" and plan.summary()


def test_kubernetes_status_and_down_need_only_the_stack_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blueprint that no longer sizes can still be looked at and torn down."""
    from llmctl import sizing
    from llmctl.k8s import pulumi_cli

    def no_sizing(*_a: object, **_k: object) -> None:
        raise LlmctlError("no GPU candidate meets the SLOs")

    seen: list[str] = []
    monkeypatch.setattr(sizing, "plan", no_sizing)
    monkeypatch.setattr(
        pulumi_cli, "outputs", lambda ref: seen.append(pulumi_cli.stack_name(ref)) or {"url": "u"}
    )
    monkeypatch.setattr(
        pulumi_cli,
        "destroy",
        lambda ref, on_line=None: {"stack": pulumi_cli.stack_name(ref), "changes": {"delete": 9}},
    )
    target = target_for(load_blueprint(HR), "prod")
    assert target.kind == "kubernetes"
    status = target.status()
    assert status.deployed and seen == ["hr-policy-assistant-prod"]
    assert any("cannot tell whether the stack is stale" in n for n in status.notes)
    gone = target.destroy()
    assert gone.to_dict() == {"stack": "hr-policy-assistant-prod", "changes": {"delete": 9}}
    with pytest.raises(LlmctlError, match="no GPU candidate"):
        target.plan()


def test_unknown_target_names_the_known_ones() -> None:
    with pytest.raises(LlmctlError, match="targets:"):
        target_for(load_blueprint(HR), "nope")


def test_down_on_a_stack_that_never_ran_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCTL_CACHE", str(tmp_path / "cache"))
    gone = target_for(load_blueprint(HR), "local").destroy()
    assert gone.stopped == () and "nothing to stop" in gone.summary()[0]
    assert not (tmp_path / "home").exists()


def test_status_and_down_of_a_stack_pulumi_never_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """Absent from the backend: not deployed, nothing to destroy, and no stack is created
    (``select_stack`` is where the Pulumi CLI would be asked; it answers "not found" here)."""
    from llmctl.k8s import pulumi_cli

    def absent(ref: object) -> None:
        raise pulumi_cli.StackAbsent("stack 'hr-policy-assistant-prod' does not exist")

    monkeypatch.setattr(pulumi_cli, "select_stack", absent)
    target = target_for(load_blueprint(HR), "prod")
    status = target.status()
    assert status.deployed is False and status.ok is False
    assert target.destroy().changes == {}


def test_token_finds_the_only_stack_whatever_its_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmctl.state import stacks_with_dev_issuer

    issuer = tmp_path / "handbook" / "dev" / "auth" / "dev-issuer.json"
    issuer.parent.mkdir(parents=True)
    issuer.write_text("{}")
    (found,) = stacks_with_dev_issuer(None, tmp_path)
    assert (found.blueprint, found.target) == ("handbook", "dev")
    assert stacks_with_dev_issuer("local", tmp_path) == []


def test_ask_on_a_kubernetes_target_needs_its_url_and_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from llmctl.cli import app

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMCTL_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["ask", str(HR), "hello?", "--target", "prod"])
    assert result.exit_code == 1
    assert "pass its gateway's --url and a --token" in str(result.exception or result.output)
