"""The kubernetes program under Pulumi's mock runtime: resource graph, security, sizing, render.

Each example blueprint is rendered once per session (the mock runtime costs about a second a run)
and every test reads that one result.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi")
pytest.importorskip("pulumi_kubernetes")

from llmctl.stacks.spec import StackSpec, replica_bounds, spec_from_blueprint  # noqa: E402

from llmctl.blueprint import load_blueprint  # noqa: E402
from llmctl.k8s.render import RenderResult, render  # noqa: E402
from llmctl.k8s.validate import policy_problems, validate  # noqa: E402
from llmctl.sizing import plan  # noqa: E402
from llmctl.sizing.blueprint import request_from_blueprint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "hr-policy-assistant": (ROOT / "blueprints" / "hr-policy-assistant.yaml", "prod"),
    "support-chatbot": (ROOT / "blueprints" / "support-chatbot.yaml", "coreweave"),
}


@functools.cache
def resolved(name: str) -> tuple[Any, Any, StackSpec, RenderResult]:
    path, target = EXAMPLES[name]
    bp = load_blueprint(path)
    cap = plan(request_from_blueprint(bp))
    spec = spec_from_blueprint(bp, target, cap)
    return bp, cap, spec, render(spec)


def spec_for(path: Path, target: str) -> StackSpec:
    bp = load_blueprint(path)
    return spec_from_blueprint(bp, target, plan(request_from_blueprint(bp)))


def objects(result: RenderResult, kind: str) -> list[dict[str, Any]]:
    return [m for m in result.manifests if m["kind"] == kind]


def one(result: RenderResult, kind: str, suffix: str) -> dict[str, Any]:
    [obj] = [m for m in objects(result, kind) if m["metadata"]["name"].endswith(suffix)]
    return obj


def pods(result: RenderResult) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in result.manifests
        if m["kind"] in ("Deployment", "Job")
    ]


params = pytest.mark.parametrize("name", sorted(EXAMPLES))


@params
def test_components_group_the_objects(name: str) -> None:
    *_, result = resolved(name)
    types = {r.type for r in result.components()}
    assert {
        "llmctl:k8s:Foundation",
        "llmctl:k8s:Inference",
        "llmctl:k8s:Retrieval",
        "llmctl:k8s:Gateway",
        "llmctl:k8s:NetworkPolicies",
        "llmctl:k8s:Monitoring",
    } <= types
    kinds = {m["kind"] for m in result.manifests}
    assert {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
        "PersistentVolumeClaim",
    } <= kinds
    ns = one(result, "Namespace", "")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@params
def test_every_container_is_locked_down_with_probes_and_limits(name: str) -> None:
    *_, result = resolved(name)
    assert policy_problems(result.manifests) == []
    for pod_name, pod in pods(result):
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod.get("initContainers", []) + pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, (pod_name, c["name"])
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["capabilities"]["drop"] == ["ALL"]
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(
                c["resources"]["limits"]
            )
        for c in pod["containers"]:
            assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c), (
                pod_name,
                c["name"],
            )
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_policy_check_flags_root_and_missing_limits() -> None:
    *_, result = resolved("hr-policy-assistant")
    bad = [dict(m) for m in result.manifests]
    dep = next(m for m in bad if m["kind"] == "Deployment")
    container = dict(dep["spec"]["template"]["spec"]["containers"][0])
    container["resources"] = {"requests": {"cpu": "1"}}
    container["securityContext"] = {**container["securityContext"], "runAsNonRoot": False}
    dep["spec"] = {
        **dep["spec"],
        "template": {
            **dep["spec"]["template"],
            "spec": {**dep["spec"]["template"]["spec"], "containers": [container]},
        },
    }
    problems = policy_problems(bad)
    assert any("no cpu/memory limits" in p for p in problems)
    assert any("may run as root" in p for p in problems)


@params
def test_triton_follows_the_capacity_plan(name: str) -> None:
    bp, cap, spec, result = resolved(name)
    triton = one(result, "Deployment", "-triton")
    pod = triton["spec"]["template"]["spec"]
    [server] = pod["containers"]
    gpus = str(cap.tp)
    assert server["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert server["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert server["image"] == bp.engine.triton_image
    low, high = replica_bounds(cap)
    assert triton["spec"]["replicas"] == low == cap.replicas
    hpa = one(result, "HorizontalPodAutoscaler", "-triton")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (low, high)
    assert high >= max(cap.replicas, bp.capacity.replicas.max)
    startup = server["startupProbe"]
    ready = (
        "/v2/health/ready" if spec.backend == "tensorrt" else f"/v2/models/{spec.llm_model}/ready"
    )
    assert startup["httpGet"]["path"] == ready
    assert server["readinessProbe"]["httpGet"]["path"] == ready
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    target = bp.target(spec.target)
    assert pod["nodeSelector"] == dict(target.node_selector)
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    metrics = [m["type"] for m in hpa["metrics"]]
    assert metrics[-1] == "Resource"  # CPU fallback always there
    if target.hpa_metric:
        assert hpa["metrics"][0]["pods"]["metric"]["name"] == target.hpa_metric
    pdb = one(result, "PodDisruptionBudget", "-triton")["spec"]
    assert pdb.get("minAvailable", 0) < low or low == 1


def test_model_store_pvc_or_object_storage() -> None:
    *_, hr = resolved("hr-policy-assistant")
    pod = one(hr, "Deployment", "-triton")["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "llm-engines"
    assert "initContainers" not in pod
    *_, sc = resolved("support-chatbot")
    pod = one(sc, "Deployment", "-triton")["spec"]["template"]["spec"]
    [fetch] = pod["initContainers"]
    assert "s3://techstart-models/engines/" in fetch["command"][-1]
    assert "value" not in str(fetch.get("envFrom"))  # credentials by Secret reference only


@params
def test_network_policies_deny_by_default(name: str) -> None:
    bp, _, spec, result = resolved(name)
    policies = {
        m["metadata"]["name"].removeprefix(f"{bp.name}-"): m["spec"]
        for m in objects(result, "NetworkPolicy")
    }
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    dns = policies["allow-dns"]["egress"][0]["ports"]
    assert {"protocol": "UDP", "port": 53} in dns
    ports = {p["port"] for p in policies["triton-from-gateway"]["ingress"][0]["ports"]}
    assert ports == {8000, 8001}
    cidrs = [
        s["ipBlock"]["cidr"]
        for s in policies["gateway-ingress"]["ingress"][0]["from"]
        if "ipBlock" in s
    ]
    assert "allow-egress" not in policies
    if bp.requirements.data_residency == "private":
        assert cidrs == ["10.0.0.0/8"]
        assert not any("0.0.0.0/0" in str(p) for p in policies.values())
    else:
        assert cidrs == ["0.0.0.0/0"]


@params
def test_labels_carry_the_hashes(name: str) -> None:
    *_, spec, result = resolved(name)
    for obj in result.manifests:
        labels = obj["metadata"]["labels"]
        assert labels["llmctl.dev/blueprint-hash"] == spec.blueprint_hash[:16]
        assert all(len(v) <= 63 for v in labels.values())
        assert obj["metadata"]["annotations"]["llmctl.dev/blueprint-hash"] == spec.blueprint_hash
    triton = one(result, "Deployment", "-triton")
    for meta in (triton["metadata"], triton["spec"]["template"]["metadata"]):
        assert meta["labels"]["llmctl.dev/engine-hash"] == spec.engine_hash[:16]
        assert meta["annotations"]["llmctl.dev/engine-hash"] == spec.engine_hash
    gateway = one(result, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert gateway["llmctl.dev/index-hash"] == spec.index_hash[:16]


@params
def test_gateway_config_and_secrets_by_reference(name: str) -> None:
    import json

    bp, _, spec, result = resolved(name)
    cm = one(result, "ConfigMap", "-gateway")
    config = json.loads(cm["data"]["gateway.json"])
    assert config["triton_url"].startswith(f"http://{bp.name}-triton.")
    assert config["engine_hash"] == spec.engine_hash
    assert config["audit"]["path"] == "/var/lib/llmctl/audit/audit.jsonl"
    assert not objects(result, "Secret")
    pod = one(result, "Deployment", "-gateway")["spec"]["template"]["spec"]
    assert (
        one(result, "Deployment", "-gateway")["spec"]["replicas"]
        == bp.target(spec.target).gateway_replicas
    )
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volumes and all(
        set(v["secret"]) <= {"secretName", "optional"} for v in secret_volumes
    )
    if bp.network.ingress.host:
        ingress = one(result, "Ingress", "-gateway")
        assert ingress["spec"]["rules"][0]["host"] == bp.network.ingress.host


@params
def test_monitoring(name: str) -> None:
    import json

    bp, _, spec, result = resolved(name)
    monitors = objects(result, "ServiceMonitor")
    assert bool(monitors) == bp.target(spec.target).prometheus_operator
    dashboard = one(result, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = next(iter(dashboard["data"].values()))
    exprs = " ".join(t["expr"] for p in json.loads(text)["panels"] for t in p["targets"])
    assert "llmctl_gateway_time_to_first_token_seconds_bucket" in exprs
    assert "nv_inference_queue_duration_us" in exprs


#: The PrometheusRule CRD's schema, strict (no unknown fields), from prometheus-operator's
#: example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml (v0.82): what the API
#: server checks, which kubernetes-validate (core kinds only) skips.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": _DURATION,
                    "labels": _STRINGS,
                    "limit": {"type": "integer"},
                    "partial_response_strategy": {"type": "string"},
                    "query_offset": _DURATION,
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["expr"],
                            "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            "properties": {
                                "alert": {"type": "string"},
                                "record": {"type": "string"},
                                "expr": {"type": ["string", "integer"]},
                                "for": _DURATION,
                                "keep_firing_for": {**_DURATION, "minLength": 1},
                                "labels": _STRINGS,
                                "annotations": _STRINGS,
                            },
                        },
                    },
                },
            },
        }
    },
}


@params
def test_alert_rules_render_as_a_valid_prometheus_rule(name: str) -> None:
    import jsonschema

    bp, _, spec, result = resolved(name)
    rules = objects(result, "PrometheusRule")
    assert bool(rules) == bp.target(spec.target).prometheus_operator
    if not rules:  # no operator in that cluster: the rules are still in the spec (llmctl runbook)
        assert spec.alert_groups
        return
    [rule] = rules
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == spec.namespace
    monitor = objects(result, "ServiceMonitor")[0]["metadata"]["labels"]
    shared = {k: v for k, v in monitor.items() if k != "app.kubernetes.io/name"}
    assert shared.items() <= rule["metadata"]["labels"].items()
    jsonschema.validate(rule["spec"], PROMETHEUS_RULE_SPEC)
    assert rule["spec"]["groups"] == [dict(g) for g in spec.alert_groups]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert {
        "LlmctlAvailabilityFastBurn",
        "LlmctlBackendCircuitOpen",
        "LlmctlAuditSinkDown",
    } <= names
    assert all(
        f'namespace="{spec.namespace}"' in r["expr"] or "llmctl_service" in r["expr"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    )
    assert all(a["labels"]["severity"] in ("page", "ticket") for a in alerts)
    assert all(a["annotations"]["runbook_url"].endswith("#" + a["alert"].lower()) for a in alerts)


def test_dashboard_reads_only_series_the_gateway_exports() -> None:
    pytest.importorskip("prometheus_client")
    from llmctl.stacks.monitoring import GATEWAY_SERIES

    from llmctl.gateway.metrics import GatewayMetrics

    registry = GatewayMetrics().registry
    exported = {s.name for fam in registry.collect() for s in fam.samples}
    assert set(GATEWAY_SERIES) <= exported


@params
def test_render_passes_kubernetes_schemas(name: str, tmp_path: Path) -> None:
    from llmctl.k8s.render import write

    *_, spec, result = resolved(name)
    report = validate(result.manifests, spec.kubernetes_version)
    assert report.errors == []
    assert report.version.startswith("1.30")
    assert len(report.checked) + len(report.skipped) == len(result.manifests)
    assert all("ServiceMonitor" in s or "PrometheusRule" in s for s in report.skipped)
    files = write(result, tmp_path)
    import yaml

    listed = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(f.name for f in files)
    assert "deployment--" + f"{spec.name}-triton.yaml" in listed


def test_schema_validation_rejects_unknown_fields() -> None:
    *_, spec, result = resolved("hr-policy-assistant")
    svc = dict(one(result, "Service", "-triton"))
    svc["spec"] = {**svc["spec"], "portz": []}
    assert validate([svc], spec.kubernetes_version).errors


def _variant(tmp_path: Path, edit: Any) -> StackSpec:
    import shutil

    import yaml

    src, target = EXAMPLES["hr-policy-assistant"]
    folder = tmp_path / "bp"
    shutil.copytree(src.parent, folder, ignore=shutil.ignore_patterns("*.pyc"))
    path = folder / src.name
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc))
    return spec_for(path, target)


def _files(spec: StackSpec, out: Path) -> dict[str, str]:
    from llmctl.k8s.render import write

    write(render(spec), out)
    return {p.name: p.read_text() for p in sorted(out.glob("*.yaml"))}


def test_gates_only_change_renders_identical_manifests_and_model_change_rolls_triton(
    tmp_path: Path,
) -> None:
    *_, base_spec, _ = resolved("hr-policy-assistant")
    base = _files(base_spec, tmp_path / "base")

    def gates(doc: dict[str, Any]) -> None:
        doc["gates"]["load"]["p95LatencyMs"] = 9000
        doc["targets"]["prod"]["gates"] = {"load": {"users": 32}}

    assert _files(_variant(tmp_path / "g", gates), tmp_path / "gates") == base

    def model(doc: dict[str, Any]) -> None:
        doc["model"]["revision"] = "1" * 40

    changed_spec = _variant(tmp_path / "m", model)
    changed = _files(changed_spec, tmp_path / "model")
    name = "deployment--hr-policy-assistant-triton.yaml"
    assert changed[name] != base[name]
    assert f"llmctl.dev/engine-hash: {changed_spec.engine_hash[:16]}" in changed[name]
    assert changed_spec.engine_hash != base_spec.engine_hash
    assert (
        changed["network-policy--hr-policy-assistant-default-deny.yaml"]
        != base["network-policy--hr-policy-assistant-default-deny.yaml"]
    )  # blueprint hash moved


def test_build_job_runs_on_a_gpu_node(tmp_path: Path) -> None:
    *_, spec, _ = resolved("hr-policy-assistant")
    from dataclasses import replace

    job = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "build",
                            "image": "nvcr.io/nvidia/tritonserver:24.08-trtllm-python-py3",
                            "command": ["llmctl", "build"],
                            "resources": {
                                "requests": {"cpu": "4", "memory": "64Gi", "nvidia.com/gpu": "1"},
                                "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"},
                            },
                            "securityContext": {
                                "runAsNonRoot": True,
                                "runAsUser": 10001,
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ]
                }
            }
        }
    }
    result = render(replace(spec, build_job=job))
    [built] = objects(result, "Job")
    pod = built["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == spec.node_selector and pod["restartPolicy"] == "Never"
    assert built["metadata"]["labels"]["llmctl.dev/engine-hash"] == spec.engine_hash[:16]
    assert validate(result.manifests, spec.kubernetes_version).errors == []


@params
def test_backup_snapshots_the_index_and_audit_claims_with_least_privilege(name: str) -> None:
    import json

    from llmctl.stacks.backup import KEEP, SCHEDULE, TOKEN_DIR

    from llmctl.ops.snapshots import TOKEN_DIR as RUNNER_TOKEN_DIR

    bp, _, spec, result = resolved(name)
    claims = {m["metadata"]["name"] for m in objects(result, "PersistentVolumeClaim")}
    cm = one(result, "ConfigMap", "-backup")
    snapshots = json.loads(cm["data"]["snapshots.json"])
    assert {s["apiVersion"] for s in snapshots} == {"snapshot.storage.k8s.io/v1"}
    assert {s["kind"] for s in snapshots} == {"VolumeSnapshot"}
    sources = {s["spec"]["source"]["persistentVolumeClaimName"] for s in snapshots}
    assert sources == {f"{bp.name}-index", f"{bp.name}-audit"} and sources <= claims
    assert all(s["metadata"]["namespace"] == spec.namespace for s in snapshots)

    cron = one(result, "CronJob", "-backup")
    assert cron["spec"]["schedule"] == SCHEDULE == "0 3 * * *" and KEEP == 7
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{bp.name}-backup"
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["command"] == ["python", "-m", "llmctl.ops.snapshots"]
    assert container["args"][-2:] == ["--keep", str(KEEP)]
    gateway_pod = one(result, "Deployment", "-gateway")["spec"]["template"]["spec"]
    assert container["securityContext"] == gateway_pod["containers"][0]["securityContext"]
    assert pod["securityContext"] == gateway_pod["securityContext"]
    token = next(m for m in container["volumeMounts"] if m["name"] == "token")
    assert token["mountPath"] == TOKEN_DIR == RUNNER_TOKEN_DIR
    assert policy_problems([cron]) == []

    role = one(result, "Role", "-backup")
    assert role["metadata"]["namespace"] == spec.namespace
    assert role["rules"] == [
        {
            "apiGroups": ["snapshot.storage.k8s.io"],
            "resources": ["volumesnapshots"],
            "verbs": ["create", "get", "list", "delete"],
        }
    ]
    assert not objects(result, "ClusterRole") and not objects(result, "ClusterRoleBinding")
    binding = one(result, "RoleBinding", "-backup")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": f"{bp.name}-backup",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{bp.name}-backup", "namespace": spec.namespace}
    ]
    egress = one(result, "NetworkPolicy", "-backup-to-apiserver")["spec"]
    assert egress["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "backup"
    assert {p["port"] for p in egress["egress"][0]["ports"]} == {443, 6443}
    assert ("to" in egress["egress"][0]) == (bp.requirements.data_residency == "private")
