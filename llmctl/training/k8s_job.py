"""The training job as a Kubernetes Job, for clusters without Slurm (``llmctl train --emit job``).

The same job spec as the batch script: the same recipe and settings, the same resources (GPUs as
``nvidia.com/gpu``, requests equal to limits so the pod is Guaranteed and the scheduler reserves
what the plan budgets), the time limit as ``activeDeadlineSeconds``. It reuses the engine build
Job's conventions (``llmctl.engine.job``): the model store volume, the non-root user, the node
selector and tolerations of the kubernetes target. Least privilege: non-root, no privilege
escalation, every capability dropped, a read-only root file system (scratch in ``emptyDir``),
no service-account token. The image must hold llmctl with its local extras and the blueprint's
folder at ``/workspace`` (the blueprint is read from there); the artifact goes to the model
store under ``training/<blueprint>/<job name>/``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import yaml

from llmctl.engine.job import RUN_AS, STORE_MOUNT, store_volume
from llmctl.errors import LlmctlError
from llmctl.training import batch

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

WORKSPACE = "/workspace"
SCRATCH = "/scratch"
JOB_TTL_S = 7 * 24 * 3600


def _target(bp: Blueprint) -> Any:
    tr = batch.require(bp)
    if tr.kubernetes.target:
        target = bp.target(tr.kubernetes.target)
        if target.type != "kubernetes":
            raise LlmctlError(
                f"{bp.path}: training.kubernetes.target {target.name!r} is not kubernetes"
            )
        return target
    for target in bp.targets.values():
        if target.type == "kubernetes":
            return target
    raise LlmctlError(
        f"{bp.path}: no kubernetes target for the training Job; add one under targets or name it "
        "in training.kubernetes.target"
    )


def job_name(bp: Blueprint) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", bp.name.lower()).strip("-")
    suffix = f"-{bp.hash[:10]}"
    return f"llmctl-train-{base}"[: 63 - len(suffix)].rstrip("-") + suffix


def _in_workspace(bp: Blueprint, path: str) -> str:
    """A path of the blueprint's folder as the image holds it (under /workspace)."""
    p = bp.resolve_path(path)
    try:
        return f"{WORKSPACE}/{p.relative_to(bp.base_dir).as_posix()}"
    except ValueError:
        return str(p)  # outside the blueprint's folder: must be mounted at the same path


def job_manifest(bp: Blueprint) -> dict[str, Any]:
    """The Job object."""
    tr = batch.require(bp)
    rs = tr.resources
    if not tr.kubernetes.image:
        raise LlmctlError(
            f"{bp.path}: training.kubernetes.image is not set: name an image with llmctl[local] "
            "and the blueprint's folder at /workspace"
        )
    if rs.nodes != 1:
        raise LlmctlError(
            f"{bp.path}: a Kubernetes Job runs on one node; training.resources.nodes is {rs.nodes} "
            "(use Slurm, or a JobSet/MPIJob, for multi-node training)"
        )
    target = _target(bp)
    name = job_name(bp)
    artifact = f"{STORE_MOUNT}/training/{bp.name}/{name}"
    config = batch.recipe_config(bp)
    config.update(
        blueprint=f"{WORKSPACE}/{bp.path.name}",
        dataset=_in_workspace(bp, tr.dataset),
        base_model=tr.base_model or bp.retrieval.embedding.model,
        threads=tr.hyperparameters.threads or rs.cpus_per_task,
    )
    if tr.recipe == "script":
        assert tr.script is not None
        command = (
            f"export LLMCTL_TRAIN_OUT={artifact}.partial && mkdir -p $LLMCTL_TRAIN_OUT && "
            f"bash {_in_workspace(bp, tr.script)} && mv -T {artifact}.partial {artifact}"
        )
    else:
        command = (
            f"cat > {SCRATCH}/recipe.json <<'LLMCTL_RECIPE'\n{json.dumps(config, sort_keys=True)}\n"
            f"LLMCTL_RECIPE\npython -m llmctl.training.recipe {SCRATCH}/recipe.json --out {artifact}"
        )
    labels = {
        "app.kubernetes.io/name": "llmctl",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/managed-by": "llmctl",
        "llmctl.dev/blueprint": bp.name[:63],
    }
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": str(rs.cpus_per_task), "memory": f"{rs.memory_gb}Gi"},
        "limits": {"cpu": str(rs.cpus_per_task), "memory": f"{rs.memory_gb}Gi"},
    }
    if rs.gpus_per_node:
        for part in resources.values():
            part["nvidia.com/gpu"] = str(rs.gpus_per_node)
    security = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "name": "train",
        "image": tr.kubernetes.image,
        "workingDir": WORKSPACE,
        "command": ["/bin/bash", "-c"],
        "args": ["set -euo pipefail\n" + command + "\n"],
        "env": [
            {"name": "HOME", "value": SCRATCH},
            {"name": "TMPDIR", "value": SCRATCH},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
            {"name": "LLMCTL_HOME", "value": f"{SCRATCH}/llmctl"},
        ],
        "resources": resources,
        "securityContext": security,
        "volumeMounts": [
            {"name": "model-store", "mountPath": STORE_MOUNT},
            {"name": "scratch", "mountPath": SCRATCH},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            store_volume(target.storage.model_store, target.name),
            {"name": "scratch", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    }
    if target.node_selector:
        pod_spec["nodeSelector"] = dict(target.node_selector)
    tolerations = [{k: v for k, v in vars(t).items() if v is not None} for t in target.tolerations]
    if tolerations:
        pod_spec["tolerations"] = tolerations
    from llmctl.blueprint.training import minutes

    limit = minutes(rs.time_limit)
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # a failed training run is looked at, not retried blindly
        "ttlSecondsAfterFinished": JOB_TTL_S,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    if limit:
        spec["activeDeadlineSeconds"] = int(limit * 60)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": target.namespace, "labels": labels},
        "spec": spec,
    }


def render_job(bp: Blueprint) -> str:
    return yaml.safe_dump(job_manifest(bp), sort_keys=False)
