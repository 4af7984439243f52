"""plan/up/down through the Automation API, where the Pulumi CLI exists.

A ``file://`` backend in a temporary folder and a test passphrase, as Pulumi's own automation tests
do. There is no cluster in CI: ``plan`` previews against a kubeconfig context that does not exist
only where ``LLMCTL_TEST_KUBE_CONTEXT`` names a real one; otherwise the tests stop at what the
machine can show (the stack is created and selected, the errors are clear).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from llmctl.errors import StackError

ROOT = Path(__file__).resolve().parents[1]
HAS_CLI = shutil.which("pulumi") is not None
NO_CLI_REASON = "the Pulumi CLI is not installed (pip's pulumi is the SDK only); llmctl render covers the program"
needs_cli = pytest.mark.skipif(not HAS_CLI, reason=NO_CLI_REASON)
needs_cluster = pytest.mark.skipif(
    not (HAS_CLI and os.environ.get("LLMCTL_TEST_KUBE_CONTEXT")),
    reason="needs the Pulumi CLI and a cluster (set LLMCTL_TEST_KUBE_CONTEXT to a kubeconfig context)",
)


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    pytest.importorskip("pulumi")
    from llmctl.stacks.spec import spec_from_blueprint

    from llmctl.blueprint import load_blueprint
    from llmctl.sizing import plan
    from llmctl.sizing.blueprint import request_from_blueprint

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-only-passphrase")
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    bp = load_blueprint(ROOT / "blueprints" / "hr-policy-assistant.yaml")
    return spec_from_blueprint(bp, "prod", plan(request_from_blueprint(bp)))


@pytest.mark.skipif(HAS_CLI, reason="the Pulumi CLI is installed here")
def test_without_the_cli_every_verb_says_what_to_install(spec) -> None:  # type: ignore[no-untyped-def]
    from llmctl.targets.kubernetes import KubernetesTarget

    target = KubernetesTarget.from_spec(spec)
    for verb in (target.plan, target.apply, target.status, target.destroy):
        with pytest.raises(StackError) as err:
            verb()
        message = str(err.value)
        assert "\n" not in message
        assert "Pulumi CLI is not installed" in message and "llmctl render" in message


def test_missing_passphrase_fails_clearly(spec, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from llmctl.k8s import pulumi_cli

    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    monkeypatch.setattr(pulumi_cli, "cli_path", lambda: "/usr/bin/pulumi")
    with pytest.raises(StackError, match="PULUMI_CONFIG_PASSPHRASE"):
        pulumi_cli.select_stack(spec)


def test_backend_defaults_to_llmctl_home(
    spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from llmctl.k8s import pulumi_cli

    assert pulumi_cli.backend_url() == f"file://{tmp_path / 'home' / 'pulumi'}"
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://state-bucket/llmctl")
    assert pulumi_cli.backend_url() == "s3://state-bucket/llmctl"
    assert pulumi_cli.stack_name(spec) == "hr-policy-assistant-prod"


@needs_cli
def test_stack_is_created_in_the_file_backend(spec, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from llmctl.k8s import pulumi_cli

    stack = pulumi_cli.select_stack(spec)
    assert stack.name == "hr-policy-assistant-prod"
    assert (tmp_path / "home" / "pulumi").is_dir()
    assert stack.get_config("kubernetes:context").value == "prod-eu-1"


@needs_cluster
def test_plan_up_down_against_a_cluster(spec) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from llmctl.targets.kubernetes import KubernetesTarget

    spec = replace(spec, context=os.environ["LLMCTL_TEST_KUBE_CONTEXT"], namespace="llmctl-test")
    target = KubernetesTarget.from_spec(spec)
    lines: list[str] = []
    assert target.plan(on_progress=lines.append).exit_code == 2
    target.apply(on_progress=lines.append)
    assert target.plan().exit_code == 0  # idempotent
    assert target.status().deployed
    target.destroy(on_progress=lines.append)
    assert lines
