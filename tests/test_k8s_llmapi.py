"""The Triton Deployment per serving backend: pytorch (LLM-API model) and the legacy engine path.

The example blueprints default to ``engine.backend: pytorch``; the tensorrt Deployment is rendered
from the same spec with the backend switched, so both stay checked against the schemas and the
security review on every run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pulumi")
pytest.importorskip("pulumi_kubernetes")

from llmctl.stacks.spec import (  # noqa: E402
    LLMAPI_CODE_DIR,
    StackSpec,
    _hf_id,
    serving_backend,
)
from test_k8s_stack import one, resolved  # noqa: E402

from llmctl.errors import StackError  # noqa: E402
from llmctl.k8s.render import RenderResult, render  # noqa: E402
from llmctl.k8s.validate import policy_problems, validate  # noqa: E402

TRITON_FLAGS = ["--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"]


@functools.cache
def rendered(name: str, backend: str = "pytorch", **changes: Any) -> tuple[StackSpec, RenderResult]:
    *_, spec, result = resolved(name)
    if backend == spec.backend and not changes:
        return spec, result
    model = "tensorrt_llm" if backend == "pytorch" else "ensemble"
    spec = replace(spec, backend=backend, llm_model=model, **changes)
    return spec, render(spec)


def triton(result: RenderResult) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    dep = one(result, "Deployment", "-triton")
    pod = dep["spec"]["template"]["spec"]
    [server] = pod["containers"]
    return dep, pod, server


def test_backend_from_the_blueprint() -> None:
    for name in ("hr-policy-assistant", "support-chatbot"):
        *_, spec, _ = resolved(name)
        assert (spec.backend, spec.llm_model) == ("pytorch", "tensorrt_llm")
    assert serving_backend("pytorch") == "pytorch"
    assert serving_backend("tensorrt") == "tensorrt"
    assert serving_backend("tensorrt-llm") == "tensorrt"  # blueprints from before the schema change
    with pytest.raises(StackError, match="engine.backend"):
        serving_backend("vllm")
    assert _hf_id("meta-llama/Llama-3.1-8B-Instruct") == "meta-llama/Llama-3.1-8B-Instruct"
    assert _hf_id("/models/llama") is None and _hf_id("./ckpt/llama") is None
    assert _hf_id("file:///x/y") is None


@pytest.mark.parametrize("name", ["hr-policy-assistant", "support-chatbot"])
@pytest.mark.parametrize("backend", ["pytorch", "tensorrt"])
def test_both_backends_pass_the_schemas_and_the_security_review(name: str, backend: str) -> None:
    spec, result = rendered(name, backend)
    assert policy_problems(result.manifests) == []
    assert validate(result.manifests, spec.kubernetes_version).errors == []
    _, pod, server = triton(result)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert server["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert server["image"] == spec.triton_image


def test_pytorch_deployment_gpus_shm_and_probes() -> None:
    spec, result = rendered("hr-policy-assistant")
    _, pod, server = triton(result)
    assert server["image"].endswith("-trtllm-python-py3")
    gpus = str(spec.tp * spec.pp)
    assert server["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert server["resources"]["limits"]["nvidia.com/gpu"] == gpus
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = volumes["dshm"]["emptyDir"]
    assert shm["medium"] == "Memory"
    assert shm["sizeLimit"] == f"{max(2, 4 * spec.tp * spec.pp)}Gi"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in server["volumeMounts"]

    startup = server["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/models/tensorrt_llm/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60 * 60  # a 70B model
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/models/tensorrt_llm/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert {p["containerPort"] for p in server["ports"]} == {8000, 8001, 8002}


def test_pytorch_gpus_are_tp_times_pp() -> None:
    spec, result = rendered("hr-policy-assistant", tp=2, pp=2)
    _, pod, server = triton(result)
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert server["resources"]["limits"]["memory"] == "128Gi"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]
    assert shm["sizeLimit"] == "16Gi"
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["LLMCTL_TENSOR_PARALLEL"] == "2"


def test_pytorch_hashes_env_and_offline_hugging_face() -> None:
    spec, result = rendered("hr-policy-assistant")
    dep, _, server = triton(result)
    for meta in (dep["metadata"], dep["spec"]["template"]["metadata"]):
        assert meta["labels"]["llmctl.dev/engine-hash"] == spec.engine_hash[:16]
        assert meta["annotations"]["llmctl.dev/engine-hash"] == spec.engine_hash
    pod_meta = dep["spec"]["template"]["metadata"]["annotations"]
    assert pod_meta["llmctl.dev/backend"] == "pytorch"
    assert pod_meta["llmctl.dev/artifact"] == f"/models/engines/{spec.engine_hash}"
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["LLMCTL_ARTIFACT_HASH"] == env["LLMCTL_ENGINE_HASH"] == spec.engine_hash
    assert env["HF_HOME"] == "/models/hf-cache"
    assert env["HF_HUB_OFFLINE"] == "1"
    # Everything written at run time lands in the emptyDir, not under the read-only store.
    for key in ("HOME", "XDG_CACHE_HOME", "HF_MODULES_CACHE", "TORCHINDUCTOR_CACHE_DIR"):
        assert env[key].startswith("/work"), key


@pytest.mark.parametrize("name", ["hr-policy-assistant", "support-chatbot"])
def test_pytorch_store_is_read_only_and_only_empty_dirs_are_writable(name: str) -> None:
    spec, result = rendered(name)
    _, pod, server = triton(result)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    if spec.model_store_kind == "pvc":
        assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    for vol, mount in mounts.items():
        if not mount.get("readOnly"):
            assert "emptyDir" in volumes[vol], vol
    assert volumes["work"]["emptyDir"]["sizeLimit"]
    assert mounts["work"]["mountPath"] == "/work"


def test_pytorch_fetches_the_artifact_from_object_storage() -> None:
    spec, result = rendered("support-chatbot")
    assert spec.model_store_kind == "s3"
    _, pod, _ = triton(result)
    [fetch] = pod["initContainers"]
    script = fetch["command"][-1]
    assert f"/engines/{spec.engine_hash}/ /models/engines/{spec.engine_hash}/" in script
    assert f"/repositories/{spec.engine_hash}/" in script and "/embedder/" in script
    # A checkpoint served as is from the HF cache: that model's folder only, without blobs/.
    assert spec.hf_model_id == "meta-llama/Llama-3.1-8B-Instruct"
    hf = "hf-cache/hub/models--meta-llama--Llama-3.1-8B-Instruct/"
    assert f"--exclude 'blobs/*' s3://techstart-models/engines/{hf} /models/{hf}" in script
    assert script.endswith("mkdir -p /models/hf-cache")
    local = replace(spec, hf_model_id=None)
    assert "hf-cache/hub" not in str(triton(render(local))[1]["initContainers"])


def test_pytorch_script_assembles_the_repository_from_the_image_code() -> None:
    spec, result = rendered("hr-policy-assistant")
    _, _, server = triton(result)
    assert server["command"][:2] == ["sh", "-c"]
    script = server["command"][2]
    assert "args" not in server
    assert LLMAPI_CODE_DIR == "/app/all_models/llmapi/tensorrt_llm/1"
    assert f'code="${{LLMCTL_LLMAPI_CODE_DIR:-{LLMAPI_CODE_DIR}}}"' in script
    assert "model.py" in script and "helpers.py" in script
    assert f"cp -R /models/{spec.repository_dir}/. /work/repository/" in script
    last = script.splitlines()[-1]
    assert last.startswith("exec tritonserver --model-repository=/work/repository ")
    assert all(flag in last.split() for flag in TRITON_FLAGS + ["--exit-timeout-secs=30"])


def _run_script(script: str, tmp: Path, code_dir: Path) -> subprocess.CompletedProcess[str]:
    """The container script against a fake root (store, /work) and a fake tritonserver."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "tritonserver"
    fake.write_text('#!/bin/sh\necho "tritonserver $*"\n')
    fake.chmod(0o755)
    text = script.replace("/models/", f"{tmp}/models/").replace("/work/", f"{tmp}/work/")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["LLMCTL_LLMAPI_CODE_DIR"] = str(code_dir)
    return subprocess.run(["sh", "-c", text], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_pytorch_script_runs_copies_the_code_and_fails_clearly(tmp_path: Path) -> None:
    spec, result = rendered("hr-policy-assistant")
    _, _, server = triton(result)
    script = server["command"][2]
    store = tmp_path / "models" / spec.repository_dir
    version = store / "tensorrt_llm" / "1"
    version.mkdir(parents=True)
    (store / "tensorrt_llm" / "config.pbtxt").write_text('backend: "python"\n')
    (version / "model.yaml").write_text("backend: pytorch\n")
    (store / "embedder" / "1").mkdir(parents=True)
    for path in [*store.rglob("*"), store]:  # a read-only store, as mounted
        path.chmod(0o555 if path.is_dir() else 0o444)
    code = tmp_path / "image-code"
    code.mkdir()
    (code / "model.py").write_text("# NVIDIA's model\n")

    try:
        missing = _run_script(script, tmp_path, code)
        assert missing.returncode == 78
        assert f"{code}/helpers.py is not in this image" in missing.stderr
        assert "LLMCTL_LLMAPI_CODE_DIR" in missing.stderr

        (code / "helpers.py").write_text("# NVIDIA's helpers\n")
        ok = _run_script(script, tmp_path, code)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.startswith(f"tritonserver --model-repository={tmp_path}/work/repository ")
        copied = tmp_path / "work" / "repository" / "tensorrt_llm" / "1"
        assert sorted(p.name for p in copied.iterdir()) == ["helpers.py", "model.py", "model.yaml"]
        assert (copied / "model.py").read_text() == "# NVIDIA's model\n"
        assert (tmp_path / "work" / "repository" / "embedder" / "1").is_dir()
        again = _run_script(script, tmp_path, code)  # a container restart finds /work filled
        assert again.returncode == 0, again.stderr
    finally:
        for path in [store, *store.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_pytorch_script_refuses_a_store_without_the_rendered_repository(tmp_path: Path) -> None:
    spec, result = rendered("hr-policy-assistant")
    script = triton(result)[2]["command"][2]
    code = tmp_path / "image-code"
    code.mkdir()
    for f in ("model.py", "helpers.py"):
        (code / f).write_text("#\n")
    out = _run_script(script, tmp_path, code)
    assert out.returncode == 78
    assert "model.yaml is missing" in out.stderr


@pytest.mark.parametrize("name", ["hr-policy-assistant", "support-chatbot"])
def test_tensorrt_deployment_is_the_engine_one(name: str) -> None:
    spec, result = rendered(name, "tensorrt")
    dep, pod, server = triton(result)
    assert server["command"] == ["tritonserver"]
    assert server["args"] == [
        f"--model-repository=/models/{spec.repository_dir}",
        *TRITON_FLAGS,
        "--exit-timeout-secs=30",
        "--log-info=false",
    ]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == str(spec.tp)
    assert server["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["startupProbe"]["failureThreshold"] == 180
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert [v["name"] for v in pod["volumes"]] == ["models", "dshm", "tmp"]
    assert pod["volumes"][1]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {e["name"] for e in server["env"]} == {"LLMCTL_ENGINE_HASH", "LLMCTL_TENSOR_PARALLEL"}
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert set(annotations) == {"llmctl.dev/blueprint-hash", "llmctl.dev/engine-hash"}
    models = next(m for m in server["volumeMounts"] if m["name"] == "models")
    assert models["readOnly"] is (spec.model_store_kind == "pvc")
    if spec.model_store_kind == "s3":
        [fetch] = pod["initContainers"]
        assert (
            f"/engines/{spec.engine_hash}/ /models/engines/{spec.engine_hash}/"
            in (fetch["command"][-1])
        )
