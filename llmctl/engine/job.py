"""The Kubernetes Job that builds an engine inside the cluster, for machines without a GPU.

The Job runs in the serving image (``bp.engine.triton_image``), so the engine is built by exactly
the TensorRT-LLM release that will load it. It writes into the model store with the engine cache's
own layout (``<store>/engines/<key>/`` with ``manifest.json`` written last and an atomic rename),
so the model store *is* an engine cache: ``EngineCache(<mounted store>/engines)`` verifies it, and a
second Job for the same key finds the engine and exits.

The steps are those of ``llmctl.engine.trtllm.steps`` (one source of truth for the command lines);
the manifest is written by a few lines of Python because the image does not have llmctl.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING, Any

from llmctl.engine.spec import BuildSpec
from llmctl.errors import BuildError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

STORE_MOUNT = "/models"
WORK_DIR = "/work"
JOB_TTL_S = 7 * 24 * 3600
RUN_AS = 1000

MANIFEST_SCRIPT = r"""
import hashlib, json, os, sys, time
out, key, inputs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
outputs = {}
for d, _, files in os.walk(out):
    for f in files:
        p = os.path.join(d, f)
        rel = os.path.relpath(p, out)
        if rel in ("manifest.json", ".last_used"):
            continue
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for b in iter(lambda: fh.read(1 << 20), b""):
                h.update(b)
        outputs[rel] = {"sha256": h.hexdigest(), "size": os.path.getsize(p)}
doc = {"format": 1, "key": key, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "inputs": inputs, "outputs": outputs, "built_by": "kubernetes-job"}
with open(os.path.join(out, "manifest.json"), "w") as fh:
    json.dump(doc, fh, indent=2, sort_keys=True)
"""


def store_volume(model_store: str | None, target_name: str) -> dict[str, Any]:
    """The pod volume for ``storage.modelStore`` (``pvc://NAME`` or ``nfs://SERVER/PATH``)."""
    if not model_store:
        raise BuildError(
            f"target {target_name!r} has no storage.modelStore: set it to pvc://<claim> or nfs://<server>/<path>"
        )
    if model_store.startswith("pvc://"):
        return {
            "name": "model-store",
            "persistentVolumeClaim": {"claimName": model_store[len("pvc://") :]},
        }
    m = re.match(r"^nfs://([^/]+)(/.*)$", model_store)
    if m:
        return {"name": "model-store", "nfs": {"server": m.group(1), "path": m.group(2)}}
    raise BuildError(
        f"target {target_name!r}: storage.modelStore {model_store!r}: a build Job can write to pvc://<claim> or nfs://<server>/<path>"
    )


def job_script(spec: Any, key: str, inputs: dict[str, Any]) -> str:
    """The container's shell script: skip if built, else fetch, convert, build, manifest, rename.

    For the PyTorch backend (an ``llmapi.ArtifactSpec``) the middle is the artifact's steps:
    fetch into the store's HF cache (where the pods read it), quantise when the plan needs it,
    tokenizer, LLM-API configuration, and a load-and-generate check; no engine build.
    """
    from llmctl.engine import trtllm

    if not isinstance(spec, BuildSpec):
        return _artifact_script(spec, key, inputs)

    final = f"{STORE_MOUNT}/engines/{key}"
    tmp = f"{STORE_MOUNT}/engines/.build-{key}-job"
    ckpt = f"{WORK_DIR}/hf" if spec.checkpoint.source == "hf" else spec.checkpoint.ref
    lines = [
        "set -euo pipefail",
        f'if [ -f {final}/manifest.json ]; then echo "engine {key} already built"; exit 0; fi',
        f"rm -rf {tmp} && mkdir -p {tmp}/tokenizer {WORK_DIR}",
    ]
    dl = trtllm.download_step(spec, ckpt)
    if dl is not None:
        lines.append(dl.shell())
    lines.append(
        f"cp {ckpt}/tokenizer* {tmp}/tokenizer/ && cp {ckpt}/*.json {tmp}/tokenizer/ 2>/dev/null || true"
    )
    for step in trtllm.steps(spec, ckpt, WORK_DIR, tmp):
        lines.append(step.shell())
    check = trtllm.validate_step(spec, f"{tmp}/engine", f"{tmp}/tokenizer")
    lines.append(check.shell())
    lines.append(
        shlex.join(["python3", "-c", MANIFEST_SCRIPT, tmp, key, json.dumps(inputs, sort_keys=True)])
    )
    lines.append(f"mv -T {tmp} {final}")
    lines.append(f'echo "engine {key} built"')
    return "\n".join(lines) + "\n"


def _artifact_script(spec: Any, key: str, inputs: dict[str, Any]) -> str:
    from llmctl.engine import llmapi

    final = f"{STORE_MOUNT}/engines/{key}"
    tmp = f"{STORE_MOUNT}/engines/.build-{key}-job"
    lines = [
        "set -euo pipefail",
        f'if [ -f {final}/manifest.json ]; then echo "artifact {key} already built"; exit 0; fi',
        f"rm -rf {tmp} && mkdir -p {tmp} {WORK_DIR}",
    ]
    lines += [step.shell() for step in llmapi.steps(spec, tmp, checkpoint_dir=f"{WORK_DIR}/hf")]
    lines.append(
        shlex.join(["python3", "-c", MANIFEST_SCRIPT, tmp, key, json.dumps(inputs, sort_keys=True)])
    )
    lines.append(f"mv -T {tmp} {final}")
    lines.append(f'echo "artifact {key} built"')
    return "\n".join(lines) + "\n"


def _name(bp_name: str, key: str) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", bp_name.lower()).strip("-")
    suffix = f"-{key[:10]}"
    return f"llmctl-build-{base}"[: 63 - len(suffix)].rstrip("-") + suffix


def job_manifest(
    bp: Blueprint, target_name: str, spec: Any, key: str, inputs: dict[str, Any]
) -> dict[str, Any]:
    target = bp.target(target_name)
    volume = store_volume(target.storage.model_store, target_name)
    labels = {
        "app.kubernetes.io/name": "llmctl",
        "app.kubernetes.io/component": "engine-build",
        "app.kubernetes.io/managed-by": "llmctl",
        "llmctl.dev/blueprint": bp.name[:63],
        "llmctl.dev/engine-version": key,
    }
    tolerations = [
        {
            k: v
            for k, v in {
                "key": t.key,
                "operator": t.operator,
                "value": t.value,
                "effect": t.effect,
            }.items()
            if v is not None
        }
        for t in target.tolerations
    ]
    gpus = str(spec.world_size)
    container = {
        "name": "build",
        "image": bp.engine.triton_image,
        "command": ["/bin/bash", "-c"],
        "args": [job_script(spec, key, inputs)],
        "env": [
            {"name": "HOME", "value": WORK_DIR},
            {"name": "HF_HOME", "value": f"{STORE_MOUNT}/hf-cache"},
            {"name": "LLMCTL_ENGINE_VERSION", "value": key},
        ],
        "resources": {
            "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": gpus},
            "limits": {"memory": "128Gi", "nvidia.com/gpu": gpus},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "model-store", "mountPath": STORE_MOUNT},
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            volume,
            {"name": "work", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},  # NCCL/MPI
        ],
    }
    if target.node_selector:
        pod_spec["nodeSelector"] = dict(target.node_selector)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": _name(bp.name, key), "namespace": target.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 1,
            "ttlSecondsAfterFinished": JOB_TTL_S,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},  # no YAML anchors
        },
    }
