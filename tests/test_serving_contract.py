"""One serving contract on every target: the local stand-in and the production LLM-API repository
declare the same LLM model (docs/CONTRACTS.md).

Both repositories are rendered from the project's own templates (``engines/local/tensorrt_llm``
and ``engines/trtllm/llmapi/tensorrt_llm``) and parsed into Triton's ``ModelConfig``; any drift in
the model name, an input or output, a data type, a shape, optionality, batching or decoupling
fails here, before it fails on a GPU node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from engine_fixtures import base_doc, changed, fixed_plan, write_blueprint

from llmctl.engine.build import artifact_paths, resolve
from llmctl.engine.render import dtype_name, parse_config
from llmctl.engine.render_llmapi import render_llmapi_repository
from llmctl.local.repository import render as render_local
from llmctl.local.repository import templates_root as local_templates
from llmctl.triton_protocol import LLM_MODEL


def _tensors(config: Any, kind: str) -> dict[str, tuple[str, tuple[int, ...], bool]]:
    return {
        t.name: (dtype_name(t.data_type), tuple(t.dims), bool(getattr(t, "optional", False)))
        for t in getattr(config, kind)
    }


def _local() -> tuple[Any, dict[str, Any]]:
    tmpl = local_templates() / LLM_MODEL / "config.pbtxt.tmpl"
    values = {
        "gguf_path": "/m.gguf",
        "gguf_sha256": "0" * 64,
        "n_ctx": 2048,
        "n_threads": 2,
        "n_threads_batch": 2,
        "n_batch": 512,
        "repeat_penalty": 1.0,
        "build_key": "k",
    }
    config = parse_config(render_local(tmpl.read_text(), values, str(tmpl)), str(tmpl))
    policy = {
        "max_batch_size": config.max_batch_size,
        "decoupled": config.model_transaction_policy.decoupled,
    }
    return config, policy


def _production(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    doc = changed(base_doc(), "engine", {"backend": "pytorch"})
    bp = write_blueprint(tmp_path, doc)
    spec, key = resolve(bp, "prod", fixed_plan())
    repo = render_llmapi_repository(
        spec, key, tmp_path / "repos", artifact_paths(spec, f"/models/engines/{key}", None)
    )
    config = repo.configs[LLM_MODEL]
    model_yaml = yaml.safe_load((repo.path / LLM_MODEL / "1" / "model.yaml").read_text())
    return config, dict(model_yaml["triton_config"])


def test_local_and_production_llm_models_declare_the_same_contract(tmp_path: Path) -> None:
    local, local_policy = _local()
    prod, prod_policy = _production(tmp_path)
    assert local.name == prod.name == LLM_MODEL
    assert _tensors(local, "input") == _tensors(prod, "input")
    assert _tensors(local, "output") == _tensors(prod, "output")
    # production sets these in model.yaml (the LLM-API model's auto_complete_config reads them)
    assert local_policy == prod_policy == {"max_batch_size": 0, "decoupled": True}


def test_a_drifted_tensor_is_caught(tmp_path: Path) -> None:
    """The comparison is not vacuous: the local config with one dtype changed differs."""
    local, _ = _local()
    prod, _ = _production(tmp_path)
    broken = type(local)()
    broken.CopyFrom(local)
    next(t for t in broken.input if t.name == "sampling_param_seed").data_type = next(
        t for t in broken.input if t.name == "sampling_param_top_k"
    ).data_type
    assert _tensors(broken, "input") != _tensors(prod, "input")
