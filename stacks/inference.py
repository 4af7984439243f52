"""Triton: the engine store, the serving Deployment, its Service, autoscaler and disruption budget.

Startup is the slow part of a TensorRT-LLM server (an engine of tens of GB is read and loaded on
the GPU), so the startup probe allows far more time than readiness and liveness, which only start
counting once the server is up.

Two serving stacks, chosen by ``spec.backend``: ``pytorch`` (the default) runs TensorRT-LLM's
PyTorch backend behind Triton's LLM-API python model ``tensorrt_llm``; ``tensorrt`` serves TensorRT
engines through the legacy ``ensemble`` and keeps the Deployment it always had.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .spec import (
    FETCH_IMAGE,
    LLMAPI_CODE_DIR,
    MODELS_DIR,
    PYTORCH,
    TRITON_GRPC,
    TRITON_HTTP,
    TRITON_METRICS,
    StackSpec,
)

COMPONENT = "triton"
CANARY = "triton-canary"  # a rollout's second Deployment (``StackSpec.canary_engine_hash``)
#: Startup may take failure_threshold x period = 180 x 10 s = 30 minutes.
STARTUP_PERIOD_S, STARTUP_FAILURES = 10, 180
#: The pytorch backend may take 360 x 10 s = 60 minutes. Tritonserver opens its HTTP port only once
#: every model has loaded, and a 70B checkpoint (about 140 GB in bf16) is read from network storage
#: at a few hundred MB/s (8-12 minutes), then each rank compiles kernels, autotunes and captures
#: CUDA graphs (minutes more per batch size); a cold node also pulls a ~30 GB image. 30 minutes, the
#: engine path's budget, restarted such pods mid-load; a restart costs the whole load again.
LLMAPI_STARTUP_FAILURES = 360
#: The writable emptyDir the pytorch container assembles its model repository (and caches) in.
WORK_DIR = "/work"
LLMAPI_REPOSITORY = f"{WORK_DIR}/repository"
#: TensorRT-LLM's LLM-API code files copied from the image into ``tensorrt_llm/1/``.
LLMAPI_CODE_FILES = ("model.py", "helpers.py")
#: Hugging Face cache in the store: read-only, and offline (nothing downloads at run time).
HF_CACHE_DIR = f"{MODELS_DIR}/hf-cache"


def triton_container(spec: StackSpec) -> dict[str, Any]:
    """The serving container for the spec's backend."""
    if spec.backend == PYTORCH:
        return llmapi_container(spec)
    return engine_container(spec)


def tritonserver_flags(repository: str) -> list[str]:
    """Tritonserver's arguments, the same on both backends (ports the Service and probes name)."""
    return [
        f"--model-repository={repository}",
        f"--http-port={TRITON_HTTP}",
        f"--grpc-port={TRITON_GRPC}",
        f"--metrics-port={TRITON_METRICS}",
        "--exit-timeout-secs=30",
        "--log-info=false",
    ]


def engine_container(spec: StackSpec) -> dict[str, Any]:
    """``engine.backend: tensorrt``: Triton serving built engines straight from the store."""
    _, tmp_mount = base.tmp_volume()
    args = tritonserver_flags(f"{MODELS_DIR}/{spec.repository_dir}")
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


def llmapi_script(spec: StackSpec) -> str:
    """The pytorch container's command: assemble a writable repository, then exec tritonserver.

    The store is mounted read-only and holds only what llmctl renders (``config.pbtxt``,
    ``1/model.yaml``, the embedder); the LLM-API model's ``model.py`` and ``helpers.py`` are
    NVIDIA's and must match the image's tensorrt_llm, so they are copied from the image
    (``$LLMCTL_LLMAPI_CODE_DIR``, default ``LLMAPI_CODE_DIR``) next to ``model.yaml``. A missing
    file stops the container with a message naming the folder, instead of Triton failing later on
    an import. ``exec`` leaves tritonserver as PID 1, so SIGTERM reaches it directly.
    """
    src = shlex.quote(f"{MODELS_DIR}/{spec.repository_dir}")
    model_yaml = shlex.quote(f"{MODELS_DIR}/{spec.repository_dir}/{spec.llm_model}/1/model.yaml")
    dst = shlex.quote(LLMAPI_REPOSITORY)
    version = shlex.quote(f"{LLMAPI_REPOSITORY}/{spec.llm_model}/1")
    code_default = shlex.quote(LLMAPI_CODE_DIR)
    missing = " ".join(LLMAPI_CODE_FILES)
    checks = " ".join(f'"$code"/{f}' for f in LLMAPI_CODE_FILES)
    flags = " ".join(shlex.quote(f) for f in tritonserver_flags(LLMAPI_REPOSITORY))
    return "\n".join(
        [
            "set -eu",
            f'code="${{LLMCTL_LLMAPI_CODE_DIR:-{code_default}}}"',
            f"for f in {missing}; do",
            '  if [ ! -f "$code/$f" ]; then',
            "    echo \"llmctl: $code/$f is not in this image: TensorRT-LLM's LLM-API model code"
            " (triton_backend/all_models/llmapi/tensorrt_llm/1 of the image's release) is needed;"
            " use a -trtllm-python-py3 image or set LLMCTL_LLMAPI_CODE_DIR to where it keeps"
            ' model.py and helpers.py" >&2',
            "    exit 78",
            "  fi",
            "done",
            f"if [ ! -f {model_yaml} ]; then",
            f'  echo "llmctl: {model_yaml} is missing: the model repository was not rendered'
            ' into the store (llmctl build)" >&2',
            "  exit 78",
            "fi",
            f"rm -rf {dst}",
            f"mkdir -p {dst}",
            f"cp -R {src}/. {dst}/",
            # The store's files may be read-only; the copy must take model.py and __pycache__.
            f"chmod -R u+w {dst}",
            f"cp {checks} {version}/",
            f"exec tritonserver {flags}",
        ]
    )


def shm_size(spec: StackSpec) -> str:
    """/dev/shm for the pytorch pod: max(2Gi, 4Gi per GPU).

    NCCL falls back to shared-memory transport between TP ranks where GPUs have no P2P path, and
    MPI (TensorRT-LLM spawns one worker per rank) and Triton's python backend (tensors between the
    server and the model's stub process) exchange data through /dev/shm too. Docker's default of
    64 MB makes NCCL fail at init; Triton's docs run these images with ``--shm-size=2g``, the floor
    here, and each further rank adds its own buffers. A memory emptyDir counts against the pod's
    memory limit, so it is bounded: 4Gi is an eighth of the 32Gi per GPU the container is given.
    """
    return f"{max(2, 4 * spec.gpus_per_replica)}Gi"


def llmapi_container(spec: StackSpec) -> dict[str, Any]:
    """``engine.backend: pytorch``: Triton's LLM-API model on TensorRT-LLM's PyTorch backend."""
    _, tmp_mount = base.tmp_volume()
    gpus = spec.gpus_per_replica
    model_ready = f"/v2/models/{spec.llm_model}/ready"
    return {
        "name": "triton",
        "image": spec.triton_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", llmapi_script(spec)],
        "ports": [
            {"name": "http", "containerPort": TRITON_HTTP, "protocol": "TCP"},
            {"name": "grpc", "containerPort": TRITON_GRPC, "protocol": "TCP"},
            {"name": "metrics", "containerPort": TRITON_METRICS, "protocol": "TCP"},
        ],
        "env": [
            {"name": "LLMCTL_ENGINE_HASH", "value": spec.engine_hash},
            {"name": "LLMCTL_ARTIFACT_HASH", "value": spec.engine_hash},
            {"name": "LLMCTL_TENSOR_PARALLEL", "value": str(spec.tp)},
            {"name": "HF_HOME", "value": HF_CACHE_DIR},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
            # HF_HOME is read-only: remote-code modules and kernel/JIT caches go to the emptyDir.
            {"name": "HF_MODULES_CACHE", "value": f"{WORK_DIR}/hf-modules"},
            {"name": "HOME", "value": WORK_DIR},
            {"name": "XDG_CACHE_HOME", "value": f"{WORK_DIR}/.cache"},
            {"name": "TORCHINDUCTOR_CACHE_DIR", "value": f"{WORK_DIR}/.cache/torchinductor"},
        ],
        "resources": base.resources(
            f"{4 * gpus}", f"{32 * gpus}Gi", cpu_limit=f"{8 * gpus}", gpus=gpus
        ),
        "securityContext": base.container_security_context(),
        # All three on the LLM model itself: the server answers /v2/health/ready as soon as any
        # model is up, and only the LLM's readiness says this pod can answer a question.
        "startupProbe": {
            "httpGet": {"path": model_ready, "port": "http"},
            "periodSeconds": STARTUP_PERIOD_S,
            "failureThreshold": LLMAPI_STARTUP_FAILURES,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {"path": model_ready, "port": "http"},
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
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}},
        "volumeMounts": [
            # Read-only on every store kind: the repository Triton loads is the copy in /work.
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "work", "mountPath": WORK_DIR},
            tmp_mount,
        ],
    }


def fetch_container(spec: StackSpec) -> dict[str, Any]:
    """Copies this engine's model repository from object storage into the pod before Triton starts.

    The pytorch backend's artifact sits where an engine would (``engines/<hash>``, the engine
    cache layout ``llmctl.engine.job`` writes: the tokenizer, and the checkpoint when it was
    quantised or copied in). A Hugging Face checkpoint served as is stays
    in the store's HF cache, so only that model's folder of it is fetched (never the whole cache,
    which holds every model ever built), without ``blobs/``: object storage has no symlinks, so the
    snapshot files were uploaded as the files themselves and the blobs would be a second copy.
    ``HF_HOME`` exists either way (an empty cache for a checkpoint inside the artifact).
    """
    store = spec.model_store.rstrip("/")
    first = spec.artifact_dir if spec.backend == PYTORCH else f"engines/{spec.engine_hash}"
    parts = [first, spec.repository_dir, "embedder"]
    steps = [
        f"aws s3 sync --no-progress {shlex.quote(f'{store}/{p}/')} {MODELS_DIR}/{p}/" for p in parts
    ]
    if spec.backend == PYTORCH:
        if (hf := spec.hf_cache_model_dir) is not None:
            steps.append(
                f"aws s3 sync --no-progress --exclude 'blobs/*' {shlex.quote(f'{store}/{hf}/')} "
                f"{shlex.quote(f'{MODELS_DIR}/{hf}/')}"
            )
        steps.append(f"mkdir -p {HF_CACHE_DIR}")
    script = " && ".join(steps)
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


def triton_volumes(spec: StackSpec) -> list[dict[str, Any]]:
    """The store, /dev/shm (sized per rank on pytorch), /tmp, and pytorch's writable /work."""
    tmp_vol, _ = base.tmp_volume()
    if spec.backend != PYTORCH:
        return [
            models_volume(spec),
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
            tmp_vol,
        ]
    return [
        models_volume(spec),
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(spec)}},
        # On disk, not memory: the repository copy (configs, embedder) and kernel/JIT caches.
        {"name": "work", "emptyDir": {"sizeLimit": "8Gi"}},
        tmp_vol,
    ]


def triton_pod_spec(spec: StackSpec) -> dict[str, Any]:
    container = triton_container(spec)
    pod: dict[str, Any] = {
        "serviceAccountName": base.name(spec, COMPONENT),
        "automountServiceAccountToken": False,
        "securityContext": base.pod_security_context(),
        "terminationGracePeriodSeconds": 60,
        "containers": [container],
        "volumes": triton_volumes(spec),
    }
    if spec.model_store_kind == "s3":
        pod["initContainers"] = [fetch_container(spec)]
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    return pod


def pod_annotations(spec: StackSpec) -> dict[str, str]:
    """The hashes (``base.annotations``: blueprint and engine, in full) and, on pytorch, the
    backend and the artifact the pod serves, for ``kubectl describe``. The engine path's pods keep
    exactly the annotations they had, so this change does not roll them."""
    out = base.annotations(spec, engine=True)
    if spec.backend == PYTORCH:
        out[f"{base.LABEL_PREFIX}/backend"] = spec.backend
        out[f"{base.LABEL_PREFIX}/artifact"] = f"{MODELS_DIR}/{spec.artifact_dir}"
    return out


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
    """Triton serving the LLM (``tensorrt_llm``, or ``ensemble`` on TensorRT engines) and the
    embedder on GPUs, sized by the capacity plan."""

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
                annotations=pod_annotations(spec),
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
        if spec.canary_engine_hash:
            self._canary(spec, deps)
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
                "gpus_per_replica": spec.gpus_per_replica,
            }
        )

    def _canary(self, spec: StackSpec, deps: list[pulumi.Resource]) -> None:
        """A rollout's canary: the same pod, serving the canary's engine/artifact, as its own
        Deployment and Service (``triton-canary``) that only the gateways' routing reaches."""
        canary = replace(spec, engine_hash=str(spec.canary_engine_hash))
        name = base.name(spec, CANARY)
        k8s.apps.v1.Deployment(
            name,
            metadata=base.metadata(canary, name, CANARY, engine=True),
            spec=base.rolling_deployment_spec(
                replicas=spec.canary_replicas,
                selector=base.selector(spec, CANARY),
                labels=base.labels(canary, CANARY, engine=True),
                annotations=pod_annotations(canary),
                pod_spec=triton_pod_spec(canary),
            ),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=deps,
                custom_timeouts=pulumi.CustomTimeouts(create="40m", update="40m"),
            ),
        )
        k8s.core.v1.Service(
            name,
            metadata=base.metadata(spec, name, CANARY),
            spec={
                "selector": base.selector(spec, CANARY),
                "ports": [
                    {"name": "http", "port": TRITON_HTTP, "targetPort": "http", "protocol": "TCP"},
                    {"name": "grpc", "port": TRITON_GRPC, "targetPort": "grpc", "protocol": "TCP"},
                ],
            },
            opts=base.child(self),
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
