"""The gateway (the same code as on a laptop, as stateless replicas) and the retrieval index volume.

The gateway reads one JSON config (a ConfigMap), the index from a shared volume, and writes its
audit trail to a volume of its own, one folder per pod, so replicas never interleave one file.
Secrets are referenced by name only: the program never sees a secret value.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .inference import disruption, pvc_spec
from .spec import GATEWAY_PORT, ROUTING_DIR, STATE_DIR, StackSpec

COMPONENT = "gateway"
CONFIG_DIR = "/etc/llmctl"
CONFIG_FILE = "gateway.json"


class Retrieval(pulumi.ComponentResource):
    """The vector index's storage; the embedder itself runs in Triton (model ``embedder``)."""

    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Retrieval", base.name(spec, "retrieval"), None, opts)
        name = base.name(spec, "index")
        # Written by `llmctl ingest`, read by every gateway replica: shared, and kept on `down`.
        self.index = k8s.core.v1.PersistentVolumeClaim(
            name,
            metadata=base.metadata(spec, name, "index", index=True),
            spec=pvc_spec(spec, spec.index_size),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.register_outputs({"index_claim": self.index.metadata["name"]})


def file_sink(spec: StackSpec) -> bool:
    return spec.audit_sink is None or spec.audit_sink.startswith("file://")


def gateway_pod_spec(spec: StackSpec, config_map: str) -> dict[str, Any]:
    tmp_vol, tmp_mount = base.tmp_volume()
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "audit", "mountPath": f"{STATE_DIR}/audit", "subPathExpr": "$(POD_NAME)"},
        {"name": "secrets", "mountPath": "/var/run/secrets/llmctl", "readOnly": True},
        tmp_mount,
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map}},
        {
            "name": "audit",
            **(
                {"persistentVolumeClaim": {"claimName": base.name(spec, "audit")}}
                if file_sink(spec)
                else {"emptyDir": {"sizeLimit": "1Gi"}}
            ),
        },
        # Optional: whatever the operator puts in this Secret (e.g. a CA bundle for the IdP).
        {"name": "secrets", "secret": {"secretName": base.name(spec, "gateway"), "optional": True}},
        tmp_vol,
    ]
    if spec.routing is not None:
        # a directory mount (not subPath), so the kubelet updates the file in place and the
        # gateway follows a new weight without restarting
        mounts.append({"name": "routing", "mountPath": ROUTING_DIR, "readOnly": True})
        volumes.append({"name": "routing", "configMap": {"name": base.name(spec, "routing")}})
    if spec.retrieval_enabled:
        mounts.append({"name": "index", "mountPath": f"{STATE_DIR}/index", "readOnly": True})
        volumes.append(
            {
                "name": "index",
                "persistentVolumeClaim": {"claimName": base.name(spec, "index"), "readOnly": True},
            }
        )
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HOME", "value": "/tmp"},
    ]
    if spec.audit_sink and not file_sink(spec):
        env.append({"name": "LLMCTL_AUDIT_SINK", "value": spec.audit_sink})
    container = {
        "name": "gateway",
        "image": spec.gateway_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "llmctl.gateway"],
        "args": [
            "--config",
            f"{CONFIG_DIR}/{CONFIG_FILE}",
            "--host",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": base.resources("500m", "1Gi", cpu_limit="2", memory_limit="2Gi"),
        "securityContext": base.container_security_context(),
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 60,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 15,
            "failureThreshold": 4,
        },
        "volumeMounts": mounts,
    }
    return {
        "serviceAccountName": base.name(spec, COMPONENT),
        "automountServiceAccountToken": False,
        "securityContext": base.pod_security_context(),
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }


class Gateway(pulumi.ComponentResource):
    """Authentication, retrieval with ACLs, prompting, audit: the service's only front door."""

    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Gateway", base.name(spec, "gateway-stack"), None, opts)
        name = base.name(spec, COMPONENT)
        k8s.core.v1.ServiceAccount(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            automount_service_account_token=False,
            opts=base.child(self),
        )
        config_text = json.dumps(spec.gateway_config, indent=2, sort_keys=True) + "\n"
        config = k8s.core.v1.ConfigMap(
            name,
            metadata=base.metadata(spec, name, COMPONENT, engine=True),
            data={CONFIG_FILE: config_text},
            opts=base.child(self),
        )
        deps: list[pulumi.Resource] = [config]
        if spec.routing is not None:
            # Outside the config hash on purpose: a traffic step must not roll the gateways.
            routing = base.name(spec, "routing")
            deps.append(
                k8s.core.v1.ConfigMap(
                    routing,
                    metadata=base.metadata(spec, routing, COMPONENT),
                    data={
                        "routing.json": json.dumps(spec.routing, indent=2, sort_keys=True) + "\n"
                    },
                    opts=base.child(self),
                )
            )
        if file_sink(spec):
            # Audit records are compliance evidence: kept when the stack goes down.
            deps.append(
                k8s.core.v1.PersistentVolumeClaim(
                    base.name(spec, "audit"),
                    metadata=base.metadata(spec, base.name(spec, "audit"), "audit"),
                    spec=pvc_spec(spec, "10Gi"),
                    opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
                )
            )
        import hashlib

        # A config change must roll the pods: the ConfigMap's content hash is in the template.
        config_hash = hashlib.sha256(config_text.encode()).hexdigest()
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata=base.metadata(spec, name, COMPONENT, engine=True, index=True),
            spec=base.rolling_deployment_spec(
                replicas=spec.gateway_replicas,
                selector=base.selector(spec, COMPONENT),
                labels=base.labels(spec, COMPONENT, engine=True, index=True),
                annotations={
                    **base.annotations(spec, engine=True, index=True),
                    "llmctl.dev/config-hash": config_hash,
                },
                pod_spec=gateway_pod_spec(spec, name),
            ),
            opts=base.child(self, deps),
        )
        self.service = k8s.core.v1.Service(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "selector": base.selector(spec, COMPONENT),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
            opts=base.child(self),
        )
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "selector": {"matchLabels": base.selector(spec, COMPONENT)},
                **disruption(spec.gateway_replicas),
            },
            opts=base.child(self),
        )
        outputs: dict[str, Any] = {"service": self.service.metadata["name"]}
        if spec.ingress_host:
            ingress = k8s.networking.v1.Ingress(
                name,
                metadata=base.metadata(
                    spec,
                    name,
                    COMPONENT,
                    # The client's address is only known at the ingress controller: enforce the
                    # blueprint's sources there too (ingress-nginx reads this annotation).
                    extra_annotations={
                        "nginx.ingress.kubernetes.io/whitelist-source-range": ",".join(
                            spec.ingress_cidrs
                        )
                    }
                    if spec.ingress_cidrs
                    else None,
                ),
                spec={
                    "tls": [{"hosts": [spec.ingress_host], "secretName": base.name(spec, "tls")}],
                    "rules": [
                        {
                            "host": spec.ingress_host,
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": name, "port": {"name": "http"}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
                opts=base.child(self, [self.service]),
            )
            outputs["url"] = f"https://{spec.ingress_host}"
            outputs["ingress"] = ingress.metadata["name"]
        else:
            outputs["url"] = f"http://{name}.{spec.namespace}.svc.cluster.local"
        self.register_outputs(outputs)
        self.url = outputs["url"]
