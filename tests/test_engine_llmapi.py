"""The PyTorch-backend path (the default): artifact spec, steps, key, build, repository, Job.

No GPU is needed: the builder is the cache's seam (a fake writes what the steps would), and the
rendered repository is parsed with Triton's own ModelConfig classes. What runs on a GPU is
``benchmarks/llmapi_gpu.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_fixtures import REVISION, base_doc, changed, fixed_plan, write_blueprint

from llmctl.engine import build as B
from llmctl.engine import llmapi
from llmctl.engine import render as R
from llmctl.engine.cache import EngineCache
from llmctl.engine.render_llmapi import ArtifactPaths, render_llmapi_repository
from llmctl.errors import BuildError

CURRENT = "nvcr.io/nvidia/tritonserver:26.10-trtllm-python-py3"


def pytorch_doc(**engine: Any) -> dict[str, Any]:
    return changed(base_doc(), "engine", {"backend": "pytorch", "tritonImage": CURRENT, **engine})


@pytest.fixture
def bp(tmp_path: Path) -> Any:
    return write_blueprint(tmp_path, pytorch_doc())


def test_dry_run_has_the_pytorch_steps_and_no_engine_build(bp, tmp_path: Path) -> None:
    result = B.build_production(
        bp,
        "prod",
        dry_run=True,
        plan=fixed_plan(precision="fp8", max_batch_size=24),
        cache=EngineCache(tmp_path / "e"),
    )
    names = [s.name for s in result.steps]
    assert names == ["download", "quantize", "tokenizer", "configure", "validate"]
    commands = " ".join(s.shell() for s in result.steps)
    assert "trtllm-build" not in commands and "convert_checkpoint" not in commands
    assert "--qformat fp8" in commands and f"--revision {REVISION}" in commands
    config = json.loads(result.steps[3].argv[-1])
    assert config["backend"] == "pytorch" and config["max_batch_size"] == 24
    assert config["kv_cache_config"] == {"free_gpu_memory_fraction": 0.9, "dtype": "fp8"}
    assert config["cuda_graph_config"]["batch_sizes"] == [1, 2, 4, 8, 16, 24]
    text = "\n".join(result.summary())
    assert "PyTorch backend" in text and "nvidia/Llama-3.1-8B-Instruct-FP8" in text


def test_bf16_serves_the_pinned_checkpoint_from_the_hf_cache(bp, tmp_path: Path) -> None:
    spec, _ = B.resolve(bp, "prod", fixed_plan(precision="bf16"))
    steps = llmapi.steps(spec, "/out")
    assert [s.name for s in steps] == ["download", "tokenizer", "configure", "validate"]
    assert "--local-dir" not in steps[0].argv  # into HF_HOME, where the pods read it offline
    config = json.loads(steps[2].argv[-1])
    assert config["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert config["revision"] == REVISION and config["kv_cache_config"]["dtype"] == "auto"


@pytest.mark.parametrize(
    ("what", "plan_kw", "doc_kw"),
    [
        ("release", {}, {"tritonImage": "nvcr.io/nvidia/tritonserver:26.05-trtllm-python-py3"}),
        ("gpu arch", {"gpu": "B200"}, {}),
        ("batch", {"max_batch_size": 32}, {}),
        ("kv fraction", {}, {"kvCacheFreeGpuMemFraction": 0.8}),
        ("tp", {"tp": 2}, {}),
    ],
)
def test_the_key_covers_config_release_and_arch(tmp_path: Path, what, plan_kw, doc_kw) -> None:
    base = B.resolve(write_blueprint(tmp_path, pytorch_doc()), "prod", fixed_plan())[1]
    other = write_blueprint(tmp_path, pytorch_doc(**doc_kw), name="other.yaml")
    assert B.resolve(other, "prod", fixed_plan(**plan_kw))[1] != base, what


def test_nvfp4_needs_blackwell(tmp_path: Path) -> None:
    bp = write_blueprint(tmp_path, pytorch_doc(quantization="nvfp4"))
    with pytest.raises(BuildError, match="nvfp4 needs a Blackwell GPU"):
        B.resolve(bp, "prod", fixed_plan(gpu="H100-SXM-80GB"))
    spec, _ = B.resolve(bp, "prod", fixed_plan(gpu="B200"))
    assert spec.quantization == "nvfp4" and spec.gpu_arch == "sm100"


def test_a_prequantised_checkpoint_is_not_quantised_again(tmp_path: Path) -> None:
    doc = changed(pytorch_doc(), "model.id", "nvidia/Llama-3.1-8B-Instruct-FP8")
    spec, _ = B.resolve(write_blueprint(tmp_path, doc), "prod", fixed_plan(precision="fp8"))
    assert spec.quantization == "none" and spec.prequantised == "fp8"
    assert spec.kv_cache_dtype == "fp8"
    assert "quantize" not in [s.name for s in llmapi.steps(spec, "/out")]


def test_int8_weight_only_is_an_engine_format(tmp_path: Path) -> None:
    bp = write_blueprint(tmp_path, pytorch_doc(quantization="int8_wo"))
    with pytest.raises(BuildError, match="TensorRT-engine format"):
        B.resolve(bp, "prod", fixed_plan())


class FakeArtifact:
    """Writes what the steps would on a GPU machine (quantised checkpoint, tokenizer, config)."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, out: Path, progress: Any) -> None:
        self.runs += 1
        (out / "checkpoint").mkdir()
        (out / "checkpoint" / "hf_quant_config.json").write_text('{"quantization": {}}')
        (out / "tokenizer").mkdir()
        (out / "tokenizer" / "tokenizer_config.json").write_text("{}")
        (out / "llm_api.json").write_text("{}")


def test_build_renders_the_llmapi_repository_then_hits(bp, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    plan = fixed_plan(precision="fp8")
    fake = FakeArtifact()
    first = B.build_production(bp, "prod", plan=plan, cache=cache, builder=fake)
    assert first.built and first.key == B.engine_version(bp, "prod", plan)
    repo = first.repository
    assert repo is not None and repo.models == ("tensorrt_llm",)
    doc = yaml.safe_load((repo.path / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert doc["model"] == str(first.engine.path / "checkpoint")  # the quantised one
    assert doc["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    manifest = json.loads((repo.path / "manifest.json").read_text())
    assert manifest["needs_from_image"] == ["tensorrt_llm/1/model.py", "tensorrt_llm/1/helpers.py"]
    second = B.build_production(bp, "prod", plan=plan, cache=cache, builder=fake)
    assert not second.built and fake.runs == 1 and second.repository.path == repo.path


def test_without_tensorrt_llm_the_error_names_both_ways_forward(
    bp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llmapi, "available", lambda: None)
    with pytest.raises(BuildError) as err:
        B.build_production(bp, "prod", plan=fixed_plan(), cache=EngineCache(tmp_path / "e"))
    msg = str(err.value)
    assert "\n" not in msg and "tensorrt_llm is not installed" in msg and "--emit-job" in msg


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "templates"
    shutil.copytree(R.templates_root(), dest)
    return dest


def _render(bp: Any, tmp_path: Path, templates: Path) -> Any:
    spec, key = B.resolve(bp, "prod", fixed_plan())
    paths = ArtifactPaths("/models/engines/k/checkpoint", "/models/engines/k/tokenizer")
    return render_llmapi_repository(spec, key, tmp_path / "r", paths, templates=templates)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('name: "tensorrt_llm"', 'name: "llm"'), "expected model"),
        (
            lambda t: t.replace('backend: "python"', 'backend: "python"\nmax_batch_size: 8'),
            "max_batch_size must not",
        ),
        (lambda t: t + "model_transaction_policy { decoupled: true }\n", "decoupling must not"),
        (
            lambda t: t.replace(
                '"finish_reason" data_type: TYPE_STRING', '"finish_reason" data_type: TYPE_INT32'
            ),
            "finish_reason",
        ),
        (
            lambda t: t + 'parameters { key: "x" value: { string_value: "${unset}" } }\n',
            "no value for placeholder",
        ),
    ],
)
def test_rendering_is_strict(bp, tmp_path: Path, templates: Path, edit, message) -> None:
    path = templates / "llmapi" / "tensorrt_llm" / "config.pbtxt.tmpl"
    path.write_text(edit(path.read_text()))
    with pytest.raises(BuildError, match=message):
        _render(bp, tmp_path, templates)


def test_emit_job_runs_the_artifact_steps_in_the_serving_image(bp, tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    result = B.build_production(bp, "prod", emit_job=out, plan=fixed_plan(precision="fp8"))
    job = yaml.safe_load(out.read_text())
    container = job["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert container["image"] == CURRENT
    assert "hf_ptq.py" in script and "trtllm-build" not in script
    assert f"/models/engines/{result.key}" in script and "manifest.json" in script
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
