"""benchmarks/llmapi_gpu.py without a GPU: it must say in one line what is missing, not trace back.

The benchmark itself needs a GPU and a -trtllm-python-py3 image's software; these tests only load
the script and run its preflight, so ``make test`` does not depend on the rendering code it calls.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "llmapi_gpu.py"


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("llmapi_gpu_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_no_gpu_is_one_line_and_exit_2(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench, "gpu_names", lambda: [])
    assert bench.main(["--model", str(tmp_path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("llmapi_gpu: skipped: no NVIDIA GPU")


def test_no_tritonserver_then_no_tensorrt_llm(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench, "gpu_names", lambda: ["GPU 0: NVIDIA H200 (UUID: GPU-x)"])
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    assert bench.main(["--model", str(tmp_path)]) == 2
    assert "tritonserver is not installed" in _one_line(capsys.readouterr().err)

    server = tmp_path / "tritonserver"
    server.write_text("#!/bin/sh\n")
    monkeypatch.setattr(bench, "has_tensorrt_llm", lambda: False)
    assert bench.main(["--model", str(tmp_path), "--tritonserver", str(server)]) == 2
    assert "tensorrt_llm is not importable" in _one_line(capsys.readouterr().err)


def test_missing_llmapi_code_names_the_folder(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = tmp_path / "tritonserver"
    server.write_text("#!/bin/sh\n")
    monkeypatch.setattr(bench, "gpu_names", lambda: ["GPU 0: NVIDIA H200"])
    monkeypatch.setattr(bench, "has_tensorrt_llm", lambda: True)
    monkeypatch.delenv("LLMCTL_LLMAPI_CODE_DIR", raising=False)
    argv = ["--model", str(tmp_path), "--tritonserver", str(server)]
    assert bench.main([*argv, "--llmapi-code", str(tmp_path / "none")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"no model.py / helpers.py in {tmp_path / 'none'}" in line


def test_image_mode_needs_a_container_runtime(
    bench: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(bench, "gpu_names", lambda: ["GPU 0: NVIDIA H200"])
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    argv = [
        "--model",
        str(tmp_path),
        "--image",
        "nvcr.io/nvidia/tritonserver:26.10-trtllm-python-py3",
    ]
    assert bench.main(argv) == 2
    assert "docker is not on PATH" in _one_line(capsys.readouterr().err)
