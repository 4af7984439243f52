"""The production model repository for the PyTorch backend: Triton's LLM-API model, strictly.

``engines/trtllm/llmapi/tensorrt_llm/config.pbtxt.tmpl`` is filled like the legacy templates
(``llmctl.engine.render.fill``: every ``${placeholder}`` must have a value); ``1/model.yaml`` is
written from the artifact's LLM-API configuration plus ``triton_config``. The rendering is then
checked, because a mistake here shows only when Triton loads the model on a GPU node:

* ``config.pbtxt`` parses into Triton's ``ModelConfig``; it names ``tensorrt_llm``, the python
  backend, and sets neither ``max_batch_size`` nor decoupling (the LLM-API model's
  ``auto_complete_config`` takes both from ``model.yaml``, and a value here could not be changed);
* it declares every tensor the gateway sends and reads (``llmctl.triton_protocol``) with the
  contract's types (the full comparison with the local stand-in is tests/test_serving_contract.py);
* ``model.yaml`` says ``triton_config: {max_batch_size: 0, decoupled: true}`` (streaming) and its
  LLM-API values agree with the artifact and the plan: parallel sizes, batch and token limits,
  the KV-cache fraction, the checkpoint path.

The python code (``1/model.py``, ``1/helpers.py``) is NVIDIA's and comes from the serving image at
start (stacks/inference.py), so it always matches the image's TensorRT-LLM release.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmctl.engine.llmapi import ArtifactSpec
from llmctl.engine.render import (
    TEMPLATE_SUFFIX,
    EmbedderSettings,
    RenderedRepository,
    dtype_name,
    embedder_code,
    embedder_values,
    fill,
    parse_config,
    place_repository,
    templates_root,
)
from llmctl.errors import BuildError
from llmctl.triton_protocol import LLM_MODEL

REPO_FORMAT = 1
# The tensors the gateway uses (llmctl.triton_protocol), as the LLM-API model declares them.
REQUIRED_INPUTS = {
    "text_input": ("TYPE_STRING", (-1,)),
    "streaming": ("TYPE_BOOL", (1,)),
    "return_finish_reason": ("TYPE_BOOL", (1,)),
    "sampling_param_max_tokens": ("TYPE_INT32", (1,)),
    "sampling_param_temperature": ("TYPE_FP32", (1,)),
    "sampling_param_top_k": ("TYPE_INT32", (1,)),
    "sampling_param_frequency_penalty": ("TYPE_FP32", (1,)),
    "sampling_param_presence_penalty": ("TYPE_FP32", (1,)),
    "sampling_param_seed": ("TYPE_UINT64", (1,)),
    "sampling_param_stop": ("TYPE_STRING", (-1,)),
}
REQUIRED_OUTPUTS = {"text_output": ("TYPE_STRING", (-1,)), "finish_reason": ("TYPE_STRING", (-1,))}
TRITON_CONFIG = {"max_batch_size": 0, "decoupled": True}


@dataclass(frozen=True)
class ArtifactPaths:
    """Where the serving container finds the artifact (the model store's mount in a pod)."""

    checkpoint: str  # a folder, or the Hugging Face id (served from HF_HOME, offline)
    tokenizer: str
    embedder_model_dir: str | None = None


def model_yaml(spec: ArtifactSpec, paths: ArtifactPaths) -> dict[str, Any]:
    """The LLM-API model's ``1/model.yaml``: the LLM API's arguments and ``triton_config``."""
    return {
        **spec.llm_api_config(paths.checkpoint, paths.tokenizer),
        "triton_config": dict(TRITON_CONFIG),
    }


def check_llm_config(config: Any, source: str) -> None:
    """Name, backend, the gateway's tensors, and no batching or decoupling set in the pbtxt."""
    if config.name != LLM_MODEL or config.backend != "python":
        raise BuildError(f"{source}: expected model {LLM_MODEL!r} on the python backend")
    if config.max_batch_size:
        raise BuildError(
            f"{source}: max_batch_size must not be set in config.pbtxt (the LLM-API model takes "
            "it from model.yaml's triton_config)"
        )
    if config.HasField("model_transaction_policy"):
        raise BuildError(
            f"{source}: decoupling must not be set in config.pbtxt (model.yaml's triton_config "
            "decides it)"
        )
    inputs = {t.name: (dtype_name(t.data_type), tuple(t.dims)) for t in config.input}
    outputs = {t.name: (dtype_name(t.data_type), tuple(t.dims)) for t in config.output}
    for kind, got, want in (
        ("input", inputs, REQUIRED_INPUTS),
        ("output", outputs, REQUIRED_OUTPUTS),
    ):
        for name, typed in want.items():
            if got.get(name) != typed:
                raise BuildError(
                    f"{source}: {kind} {name} is {got.get(name) or 'missing'}, the gateway needs "
                    f"{typed[0]} {list(typed[1])}"
                )


def cross_check_yaml(
    doc: Mapping[str, Any], spec: ArtifactSpec, paths: ArtifactPaths, source: str
) -> None:
    """``model.yaml`` against the artifact and the plan it was derived from."""
    want = model_yaml(spec, paths)
    for key in ("model", "tensor_parallel_size", "pipeline_parallel_size", "max_batch_size"):
        if doc.get(key) != want[key]:
            raise BuildError(f"{source}: {key} is {doc.get(key)!r}, the plan says {want[key]!r}")
    if doc.get("backend") != "pytorch":
        raise BuildError(f"{source}: backend must be pytorch")
    tc = doc.get("triton_config") or {}
    if tc.get("decoupled") is not True or tc.get("max_batch_size") != 0:
        raise BuildError(
            f"{source}: triton_config must be {{max_batch_size: 0, decoupled: true}} (streaming, "
            "one prompt per request), not " + repr(tc)
        )
    kv = (doc.get("kv_cache_config") or {}).get("free_gpu_memory_fraction")
    if not isinstance(kv, int | float) or not 0 < kv <= 1:
        raise BuildError(f"{source}: kv_cache_config.free_gpu_memory_fraction {kv!r} not in (0, 1]")


def render_llmapi_repository(
    spec: ArtifactSpec,
    artifact_key: str,
    out_root: Path,
    paths: ArtifactPaths,
    *,
    embedder: EmbedderSettings | None = None,
    templates: Path | None = None,
) -> RenderedRepository:
    """Render and check ``tensorrt_llm`` (and the embedder), placed at ``out_root/<key>``."""
    tdir = templates or templates_root()
    tmpl = tdir / "llmapi" / LLM_MODEL / f"config.pbtxt{TEMPLATE_SUFFIX}"
    if not tmpl.is_file():
        raise BuildError(f"{tmpl}: template missing")
    text = fill(tmpl.read_text(), {"artifact_version": artifact_key}, str(tmpl))
    configs: dict[str, Any] = {LLM_MODEL: parse_config(text, str(tmpl))}
    check_llm_config(configs[LLM_MODEL], str(tmpl))
    doc = model_yaml(spec, paths)
    yaml_text = "# Rendered by llmctl from the capacity plan; see llmctl.engine.llmapi.\n"
    yaml_text += yaml.safe_dump(doc, sort_keys=False)
    cross_check_yaml(yaml.safe_load(yaml_text), spec, paths, f"{LLM_MODEL}/1/model.yaml")
    files: dict[str, bytes] = {
        f"{LLM_MODEL}/config.pbtxt": text.encode(),
        f"{LLM_MODEL}/1/model.yaml": yaml_text.encode(),
    }
    models: tuple[str, ...] = (LLM_MODEL,)
    if embedder is not None:
        if not paths.embedder_model_dir:
            raise BuildError("the embedder needs ArtifactPaths.embedder_model_dir")
        etmpl = tdir / "embedder" / f"config.pbtxt{TEMPLATE_SUFFIX}"
        etext = fill(
            etmpl.read_text(), embedder_values(embedder, paths.embedder_model_dir), str(etmpl)
        )
        configs["embedder"] = parse_config(etext, str(etmpl))
        files["embedder/config.pbtxt"] = etext.encode()
        files["embedder/1/model.py"] = embedder_code().read_bytes()
        models += ("embedder",)
    h = hashlib.sha256(f"llmapi\0{REPO_FORMAT}\0{artifact_key}\n".encode())
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel] + b"\n")
    key = h.hexdigest()[:16]
    manifest = {
        "format": REPO_FORMAT,
        "backend": "pytorch",
        "key": key,
        "artifact_version": artifact_key,
        "models": list(models),
        "paths": {
            "checkpoint": paths.checkpoint,
            "tokenizer": paths.tokenizer,
            "embedder_model_dir": paths.embedder_model_dir,
        },
        "needs_from_image": [f"{LLM_MODEL}/1/model.py", f"{LLM_MODEL}/1/helpers.py"],
    }
    final, built = place_repository(out_root, key, models, files, manifest)
    return RenderedRepository(final, key, models, True, built, configs)
