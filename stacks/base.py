"""Shared pieces of every llmctl Kubernetes object: names, labels, security defaults.

Objects are written as plain dicts in Kubernetes' own camelCase, so what the program says is what
``kubectl get -o yaml`` shows and what ``llmctl render`` writes; pulumi_kubernetes passes such keys
through unchanged.
"""

from __future__ import annotations

from typing import Any

import pulumi

from .spec import StackSpec

LABEL_PREFIX = "llmctl.dev"
#: Label values are at most 63 characters: labels carry a prefix of each hash, annotations all of it.
SHORT_HASH = 16
RUN_AS_USER = 10001


def name(spec: StackSpec, part: str) -> str:
    return f"{spec.name}-{part}"


def selector(spec: StackSpec, component: str) -> dict[str, str]:
    """The immutable part of the labels: a Deployment's selector must never change."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": spec.name,
    }


def labels(
    spec: StackSpec, component: str, *, engine: bool = False, index: bool = False
) -> dict[str, str]:
    """Labels naming the hashes that produced an object, so every pod is traceable to a version.

    Only the objects an engine or an index change really affects carry those hashes, so a new
    index does not roll Triton and a new engine does not roll the network policy.
    """
    out = {
        **selector(spec, component),
        "app.kubernetes.io/part-of": "llmctl",
        "app.kubernetes.io/managed-by": "llmctl",
        f"{LABEL_PREFIX}/target": spec.target,
        f"{LABEL_PREFIX}/blueprint-hash": spec.blueprint_hash[:SHORT_HASH],
    }
    if engine:
        out[f"{LABEL_PREFIX}/engine-hash"] = spec.engine_hash[:SHORT_HASH]
    if index:
        out[f"{LABEL_PREFIX}/index-hash"] = spec.index_hash[:SHORT_HASH]
    return out


def annotations(spec: StackSpec, *, engine: bool = False, index: bool = False) -> dict[str, str]:
    out = {f"{LABEL_PREFIX}/blueprint-hash": spec.blueprint_hash}
    if engine:
        out[f"{LABEL_PREFIX}/engine-hash"] = spec.engine_hash
    if index:
        out[f"{LABEL_PREFIX}/index-hash"] = spec.index_hash
    return out


def metadata(
    spec: StackSpec,
    obj_name: str,
    component: str,
    *,
    engine: bool = False,
    index: bool = False,
    extra_labels: dict[str, str] | None = None,
    extra_annotations: dict[str, str] | None = None,
    namespaced: bool = True,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": obj_name,
        "labels": {**labels(spec, component, engine=engine, index=index), **(extra_labels or {})},
        "annotations": {
            **annotations(spec, engine=engine, index=index),
            **(extra_annotations or {}),
        },
    }
    if namespaced:
        meta["namespace"] = spec.namespace
    return meta


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The restricted pod-security profile, plus a read-only root file system."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(
    cpu: str,
    memory: str,
    *,
    cpu_limit: str | None = None,
    memory_limit: str | None = None,
    gpus: int = 0,
) -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory}
    limits = {"cpu": cpu_limit or cpu, "memory": memory_limit or memory}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
        limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp for containers whose root file system is read-only."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "tmp", "mountPath": "/tmp"}


def rolling_deployment_spec(
    *,
    replicas: int,
    selector: dict[str, str],
    labels: dict[str, str],
    annotations: dict[str, str],
    pod_spec: dict[str, Any],
) -> dict[str, Any]:
    """A Deployment spec that rolls one pod at a time and never below ``replicas``: a new pod
    must be ready before an old one goes (GPUs are the scarce thing; gateways hold streams)."""
    return {
        "replicas": replicas,
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": selector},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": pod_spec,
        },
    }


def child(
    parent: pulumi.Resource, depends_on: list[pulumi.Resource] | None = None
) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, depends_on=depends_on or [])
