"""A rollout on a kubernetes target, rendered: the routing ConfigMap the gateways read, the
canary's own Triton Deployment when its model differs, NetworkPolicies that cover it, all
validated against the cluster's schemas and the security review, and the plan's traffic line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("pulumi")
pytest.importorskip("pulumi_kubernetes")

from blueprint_paths import absolute_paths  # noqa: E402
from llmctl.stacks.network import policies  # noqa: E402
from test_k8s_stack import one  # noqa: E402

from llmctl.blueprint import load_blueprint  # noqa: E402
from llmctl.errors import LlmctlError  # noqa: E402
from llmctl.gateway.routing import parse_routing  # noqa: E402
from llmctl.k8s.render import render  # noqa: E402
from llmctl.k8s.validate import policy_problems, validate  # noqa: E402
from llmctl.rollout import kubernetes as K  # noqa: E402
from llmctl.rollout.revisions import History  # noqa: E402
from llmctl.targets.kubernetes import KubernetesPlan, resolve_spec  # noqa: E402

HR = Path(__file__).resolve().parent.parent / "blueprints" / "hr-policy-assistant.yaml"


def write(tmp: Path, name: str, retrieval: dict[str, Any] | None = None, **model: Any) -> Any:
    doc = absolute_paths(yaml.safe_load(HR.read_text()), HR.parent)
    doc["model"].update(model)
    doc["retrieval"].update(retrieval or {})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_blueprint(path)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    return tmp_path


def applied(bp: Any) -> Any:
    """What `llmctl up --target prod` records (Pulumi cannot run here)."""
    return K.record_applied(bp, "prod", resolve_spec(bp, "prod"))


def test_a_settings_only_canary_is_a_routing_configmap(home: Path) -> None:
    stable = applied(write(home, "v1"))
    bp2 = write(home, "v2", retrieval={"topK": 6})  # retrieval depth: a gateway setting
    intent = K.start(bp2, "prod", 25, resolve_spec(bp2, "prod", rollout=False))
    spec = resolve_spec(bp2, "prod")
    assert spec.canary_engine_hash is None and spec.engine_hash == stable.model_hash
    routing = parse_routing(spec.routing, "spec")
    assert [(a.role, a.weight) for a in routing.arms] == [("canary", 25.0), ("stable", 75.0)]
    assert routing.arm("canary").settings["top_k"] == 6 != stable.settings["top_k"]
    result = render(spec)
    cm = one(result, "ConfigMap", "-routing")
    assert (
        parse_routing(yaml.safe_load(cm["data"]["routing.json"]), "cm").salt
        == intent["canary"]["id"]
    )
    gw = one(result, "Deployment", "-gateway")["spec"]["template"]["spec"]
    mounts = gw["containers"][0]["volumeMounts"]
    assert {"name": "routing", "mountPath": "/etc/llmctl/routing", "readOnly": True} in mounts
    assert not [m for m in result.manifests if m["metadata"]["name"].endswith("triton-canary")]
    lines = KubernetesPlan("s", {"update": 1}, spec).summary()
    assert any("canary" in x and "25%" in x and "stable" in x and "75%" in x for x in lines)


def test_a_model_canary_gets_its_own_triton_under_the_same_policies(home: Path) -> None:
    applied(write(home, "v1"))
    bp2 = write(home, "v2", maxOutputTokens=256)  # a new artifact (its sequence length)
    K.start(bp2, "prod", 10, resolve_spec(bp2, "prod", rollout=False))
    spec = resolve_spec(bp2, "prod")
    assert spec.canary_engine_hash and spec.canary_engine_hash != spec.engine_hash
    result = render(spec)
    report = validate(result.manifests, spec.kubernetes_version)
    assert not report.errors, report.errors
    assert policy_problems(result.manifests) == []
    canary = one(result, "Deployment", "-triton-canary")
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "triton-canary"
    assert spec.canary_engine_hash in str(canary["spec"]["template"])
    arm = parse_routing(spec.routing, "spec").arm("canary")
    assert arm.llm_url and "triton-canary" in arm.llm_url
    rules = policies(spec)
    values = rules["triton-from-gateway"]["podSelector"]["matchExpressions"][0]["values"]
    assert values == ["triton", "triton-canary"]


def test_rollback_removes_the_canary(home: Path) -> None:
    applied(write(home, "v1"))
    bp2 = write(home, "v2", maxOutputTokens=256)
    intent = K.start(bp2, "prod", 25, resolve_spec(bp2, "prod", rollout=False))
    assert K.stop(bp2, "prod") == intent
    assert resolve_spec(bp2, "prod").routing is None
    state = History(K._state(bp2, "prod").revisions_file).revisions()
    assert state[intent["canary"]["id"]].state == "rolled-back"
    assert K.stop(bp2, "prod") is None


def test_nothing_to_roll_out_and_no_active_revision_are_one_line(home: Path) -> None:
    bp = write(home, "v1")
    with pytest.raises(LlmctlError, match="no active revision"):
        K.start(bp, "prod", 10, resolve_spec(bp, "prod", rollout=False))
    applied(bp)
    with pytest.raises(LlmctlError, match="nothing to roll out"):
        K.start(bp, "prod", 10, resolve_spec(bp, "prod", rollout=False))


def test_the_verbs(home: Path) -> None:
    from typer.testing import CliRunner

    from llmctl.cli import app

    bp = write(home, "v1")
    runner = CliRunner()
    res = runner.invoke(app, ["history", str(bp.path), "--target", "prod"])
    assert res.exit_code == 0 and "no revisions yet" in res.output
    applied(bp)
    bp2 = write(home, "v2", retrieval={"topK": 6})
    res = runner.invoke(app, ["rollout", str(bp2.path), "--target", "prod"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["rollout", str(bp2.path), "--target", "prod", "--weight", "5"])
    assert res.exit_code == 0 and "at 5%" in res.output, res.output
    res = runner.invoke(app, ["history", str(bp2.path), "--target", "prod", "-o", "json"])
    assert res.exit_code == 0 and '"state": "active"' in res.output
    res = runner.invoke(app, ["rollback", str(bp2.path), "--target", "prod"])
    assert res.exit_code == 0 and "removed" in res.output
