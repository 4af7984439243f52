"""Triton: the engine store, the serving Deployment, its Service, autoscaler and disruption budget.

Startup is the slow part of a TensorRT-LLM server (an engine of tens of GB is read and loaded on
the GPU), so the startup probe allows far more time than readiness and liveness, which only start
counting once the server is up.
"""

from __future__ import annotations

import shlex
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .spec import FETCH_IMAGE, MODELS_DIR, TRITON_GRPC, TRITON_HTTP, TRITON_METRICS, StackSpec

COMPONENT = "triton"
#: Startup may take failure_threshold x period = 180 x 10 s = 30 minutes.
STARTUP_PERIOD_S, STARTUP_FAILURES = 10, 180


def triton_container(spec: StackSpec) -> dict[str, Any]:
    _, tmp_mount = base.tmp_volume()
    args = [
        f"--model-repository={MODELS_DIR}/{spec.repository_dir}",
        f"--http-port={TRITON_HTTP}",
        f"--grpc-port={TRITON_GRPC}",
        f"--metrics-port={TRITON_METRICS}",
        "--exit-timeout-secs=30",
        "--log-info=false",
    ]
    return {
        "name": "triton",
        "image": spec.triton_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tritonserver"],
        "args": args,
        "ports": [
            {"name": "http", "containerPort": TRITON_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": TRITON_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": TRITON_METRICS, "protocol": "TCP"},
        ],
        "env": [
            {"name": "LLMCTL_ENGINE_HASH", "value": spec.engine_hash},
            {"name": "LLMCTL_TENSOR_PARALLEL", "value": str(spec.tp)},
        ],
        "resources": base.resources(
            f"{4 * spec.tp}", f"{32 * spec.tp}Gi", cpu_limit=f"{8 * spec.tp}", gpus=spec.tp
        ),
        "securityContext": base.container_security_context(),
        "startupProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": STARTUP_FAILURES,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 5,
        },
        # Leave the Service's endpoints before the server stops taking requests.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": spec.model_store_kind == "pvc"},
            {"name": "dshm", "mountPath": "/dev/shm"},
            tmp_mount,
        ],
    }


def fetch_container(spec: StackSpec) -> dict[str, Any]:
    """Copies this engine's model repository from object storage into the pod before Triton starts."""
    store = spec.model_store.rstrip("/")
    parts = [f"engines/{spec.engine_hash}", spec.repository_dir, "embedder"]
    script = " && ".join(
        f"aws s3 sync --no-progress {shlex.quote(f'{store}/{p}/')} {MODELS_DIR}/{p}/" for p in parts
    )
    _, tmp_mount = base.tmp_volume()
    return {
        "name": "fetch-engine",
        "image": FETCH_IMAGE,
        "command": ["sh", "-c", script],
        # Credentials by reference only: a Secret the operator creates, never a value here.
        "envFrom": [{"secretRef": {"name": base.name(spec, "model-store"), "optional": True}}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": base.resources("500m", "1Gi", cpu_limit="2", memory_limit="2Gi"),
        "securityContext": base.container_security_context(),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, tmp_mount],
    }


def models_volume(spec: StackSpec) -> dict[str, Any]:
    if spec.model_store_kind == "pvc":
        return {
            "name": "models",
            "persistentVolumeClaim": {"claimName": spec.model_store_pvc, "readOnly": True},
        }
    return {"name": "models", "emptyDir": {"sizeLimit": spec.model_store_size}}


def triton_pod_spec(spec: StackSpec) -> dict[str, Any]:
    tmp_vol, _ = base.tmp_volume()
    container = triton_container(spec)
    pod: dict[str, Any] = {
        "serviceAccountName": base.name(spec, COMPONENT),
        "automountServiceAccountToken": False,
        "securityContext": base.pod_security_context(),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": [
            models_volume(spec),
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            tmp_vol,
        ],
    }
    if spec.model_store_kind == "s3":
        pod["initContainers"] = [fetch_container(spec)]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    return pod


def hpa_metrics(spec: StackSpec) -> list[dict[str, Any]]:
    """The LLM-aware metric when a metrics adapter serves it, CPU always as the fallback."""
    cpu = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    if not spec.hpa_metric:
        return [cpu]
    pods = {
        "type": "Pods",
        "pods": {
            "metric": {"name": spec.hpa_metric},
            "target": {"type": "AverageValue", "averageValue": spec.hpa_target_value},
        },
    }
    return [pods, cpu]


def disruption(replicas: int) -> dict[str, Any]:
    """One pod down at a time while more than one runs; a single replica may always be evicted
    (a budget of 1 of 1 would block every node drain)."""
    if replicas > 1:
        return {"minAvailable": replicas - 1}
    return {"maxUnavailable": 1}


class Inference(pulumi.ComponentResource):
    """Triton serving the LLM (``ensemble``) and the embedder on GPUs, sized by the capacity plan."""

    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Inference", base.name(spec, "inference"), None, opts)
        name = base.name(spec, COMPONENT)
        deps: list[pulumi.Resource] = []
        self.service_account = k8s.core.v1.ServiceAccount(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            automount_service_account_token=False,
            opts=base.child(self),
        )
        if spec.model_store_kind == "pvc":
            store = k8s.core.v1.PersistentVolumeClaim(
                spec.model_store_pvc,
                metadata=base.metadata(spec, spec.model_store_pvc, "model-store"),
                spec=pvc_spec(spec, spec.model_store_size),
                # Built engines outlive the stack: `llmctl down` must not throw away hours of GPU time.
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            deps.append(store)
        if spec.build_job is not None:
            deps.append(self._build_job(spec, deps))
        labels = base.labels(spec, COMPONENT, engine=True)
        self.deployment = k8s.apps.v1.Deployment(
            name,
            metadata=base.metadata(spec, name, COMPONENT, engine=True),
            spec=base.rolling_deployment_spec(
                replicas=spec.replicas_min,
                selector=base.selector(spec, COMPONENT),
                labels=labels,
                annotations=base.annotations(spec, engine=True),
                pod_spec=triton_pod_spec(spec),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=deps,
                # The HPA owns the replica count once it runs; an apply must not fight it.
                ignore_changes=["spec.replicas"],
                custom_timeouts=pulumi.CustomTimeouts(create="40m", update="40m"),
            ),
        )
        self.service = k8s.core.v1.Service(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "selector": base.selector(spec, COMPONENT),
                "ports": [
                    {"name": "http", "port": TRITON_HTTP, "targetPort": "http", "protocol": "TCP"},
                    {"name": "grpc", "port": TRITON_GRPC, "targetPort": "grpc", "protocol": "TCP"},
                    {
                        "name": "metrics",
                        "port": TRITON_METRICS,
                        "targetPort": "metrics",
                        "protocol": "TCP",
                    },
                ],
            },
            opts=base.child(self),
        )
        self.hpa = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": spec.replicas_min,
                "maxReplicas": spec.replicas_max,
                "metrics": hpa_metrics(spec),
                # Scale out quickly, in slowly: a new replica costs minutes of engine loading.
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 60,
                        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 120}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 900,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
                    },
                },
            },
            opts=base.child(self, [self.deployment]),
        )
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "selector": {"matchLabels": base.selector(spec, COMPONENT)},
                **disruption(spec.replicas_min),
            },
            opts=base.child(self),
        )
        self.register_outputs(
            {
                "deployment": self.deployment.metadata["name"],
                "service": self.service.metadata["name"],
                "replicas_min": spec.replicas_min,
                "replicas_max": spec.replicas_max,
                "gpus_per_replica": spec.tp,
            }
        )

    def _build_job(self, spec: StackSpec, deps: list[pulumi.Resource]) -> pulumi.Resource:
        """The engine build Job (from ``llmctl build --emit-job``), on a GPU node, writing into the
        store; named by the engine hash, so each engine is built once and a Job is never mutated."""
        job = dict(spec.build_job or {})
        job_spec = dict(job.get("spec", job))
        template = dict(job_spec.get("template") or {})
        pod = dict(template.get("spec") or {})
        if spec.node_selector:
            pod.setdefault("nodeSelector", dict(spec.node_selector))
        if spec.tolerations:
            pod.setdefault("tolerations", [dict(t) for t in spec.tolerations])
        pod.setdefault("serviceAccountName", base.name(spec, COMPONENT))
        pod.setdefault("automountServiceAccountToken", False)
        pod.setdefault("securityContext", base.pod_security_context())
        pod.setdefault("restartPolicy", "Never")
        template["spec"] = pod
        template.setdefault("metadata", {})
        template["metadata"] = {
            **template["metadata"],
            "labels": {
                **template["metadata"].get("labels", {}),
                **base.labels(spec, "engine-build", engine=True),
            },
        }
        job_spec["template"] = template
        job_spec.setdefault("backoffLimit", 1)
        name = base.name(spec, f"build-{spec.engine_hash[:12]}")
        return k8s.batch.v1.Job(
            name,
            metadata=base.metadata(spec, name, "engine-build", engine=True),
            spec=job_spec,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(deps),
                custom_timeouts=pulumi.CustomTimeouts(create="180m"),
            ),
        )


def pvc_spec(spec: StackSpec, size: str, mode: str = "ReadWriteMany") -> dict[str, Any]:
    out: dict[str, Any] = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
    if spec.storage_class:
        out["storageClassName"] = spec.storage_class
    return out
