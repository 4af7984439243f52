"""A real TensorRT-LLM build of a tiny model, validated by generating tokens, then cross-checked.

Skipped (with the reason) where TensorRT-LLM, a GPU or a tiny checkpoint is missing: the build
needs all three. Point ``LLMCTL_TEST_TINY_CHECKPOINT`` at a small Hugging Face-format Llama folder,
or have ``HuggingFaceTB/SmolLM2-135M-Instruct`` in the Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from engine_fixtures import base_doc, changed, fixed_plan, write_blueprint

from llmctl.engine import trtllm

pytestmark = pytest.mark.gpu
TINY = "HuggingFaceTB/SmolLM2-135M-Instruct"
GPU_BY_NAME = {
    "H100": "H100-SXM-80GB",
    "H200": "H200-SXM-141GB",
    "A100": "A100-SXM-80GB",
    "L40S": "L40S",
    "L4": "L4",
    "B200": "B200",
}


def _gpu() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        name = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((cat for key, cat in GPU_BY_NAME.items() if key in name), None)


def _tiny_checkpoint() -> Path | None:
    env = os.environ.get("LLMCTL_TEST_TINY_CHECKPOINT")
    if env:
        return Path(env)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(TINY, local_files_only=True))
    except Exception:
        return None


NO_TRTLLM = "tensorrt_llm is not installed (a TensorRT-LLM build needs an NVIDIA GPU machine)"


def test_build_a_tiny_engine_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = trtllm.available()
    if version is None:
        pytest.skip(reason=NO_TRTLLM)
    gpu = _gpu()
    if gpu is None:
        pytest.skip(reason="no NVIDIA GPU from the catalogue found by nvidia-smi")
    ckpt = _tiny_checkpoint()
    if ckpt is None or not ckpt.is_dir():
        pytest.skip(reason=f"no tiny checkpoint: set LLMCTL_TEST_TINY_CHECKPOINT or cache {TINY}")
    monkeypatch.setenv("LLMCTL_TRTLLM_VERSION", version)  # build with what is installed
    monkeypatch.setenv("LLMCTL_ENGINE_CACHE", str(tmp_path / "engines"))
    doc = changed(
        base_doc(), "model", {"id": str(ckpt), "maxInputTokens": 256, "maxOutputTokens": 64}
    )
    bp = write_blueprint(tmp_path, doc)
    plan = fixed_plan(gpu=gpu, precision="bf16", max_batch_size=4, model={"name": "SmolLM2-135M"})
    from llmctl.engine.build import build_production

    events: list[str] = []
    result = build_production(bp, "prod", plan=plan, progress=events.append)
    assert result.built and result.engine is not None and result.repository is not None
    assert result.repository.cross_checked
    log = (result.engine.path / "build.log").read_text()
    assert "llmctl-validate: generated" in log
    cfg = json.loads((result.engine.engine_dir / "config.json").read_text())
    assert cfg["build_config"]["max_batch_size"] == 4
    again = build_production(bp, "prod", plan=plan)
    assert not again.built and again.key == result.key
