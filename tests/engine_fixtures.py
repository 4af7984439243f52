"""Shared pieces of the engine tests: blueprints written to tmp_path, a fixed plan, a fake builder.

The fake builder is the one stand-in for TensorRT-LLM (no GPU here); it is injected where the
real builder goes, ``EngineCache.ensure`` (see llmctl/engine/cache.py), and keeps its own state
(how often it ran) so tests can tell a cache hit from a rebuild.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
REVISION = "0e9e39f249a16976918f6564b8830bc894c89659"


def base_doc() -> dict[str, Any]:
    """A production blueprint (kubernetes target, pinned revision) without retrieval."""
    return {
        "apiVersion": "llmctl.dev/v1",
        "kind": "Blueprint",
        "metadata": {"name": "engine-test"},
        "model": {
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "revision": REVISION,
            "maxInputTokens": 2048,
            "maxOutputTokens": 512,
        },
        "requirements": {
            "citations": "none",
            "audit": {"sink": "file://audit/audit.jsonl", "retentionDays": 30},
        },
        # The legacy TensorRT-engine path these tests cover (the pytorch default has its own).
        "engine": {
            "backend": "tensorrt",
            "tritonImage": "nvcr.io/nvidia/tritonserver:24.12-trtllm-python-py3",
        },
        "retrieval": {"enabled": False},
        "targets": {
            "prod": {
                "type": "kubernetes",
                "namespace": "llm",
                "storage": {"modelStore": "pvc://llm-engines"},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            }
        },
    }


def write_blueprint(tmp_path: Path, doc: dict[str, Any], name: str = "bp.yaml") -> Any:
    from llmctl.blueprint import load_blueprint

    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_blueprint(path)


def changed(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def fixed_plan(**kw: Any) -> Any:
    """A capacity plan as the planner returns it (the attributes the engine reads)."""
    values = {
        "gpu": "H100-SXM-80GB",
        "precision": "bf16",
        "tp": 1,
        "replicas": 2,
        "max_batch_size": 16,
        "model": {"name": "Llama-3.1-8B"},
    }
    values.update(kw)
    return SimpleNamespace(**values)


class FakeBuilder:
    """Writes what trtllm-build would (engine files, config.json, tokenizer); counts its runs."""

    def __init__(self, spec: Any = None, *, fail_after_files: bool = False) -> None:
        self.spec = spec
        self.runs = 0
        self.fail_after_files = fail_after_files

    def engine_config(self) -> dict[str, Any]:
        s = self.spec
        return {
            "version": "0.16.0",
            "pretrained_config": {
                "architecture": "LlamaForCausalLM",
                "dtype": s.dtype if s else "bfloat16",
                "mapping": {
                    "world_size": s.world_size if s else 1,
                    "tp_size": s.tp if s else 1,
                    "pp_size": s.pp if s else 1,
                },
            },
            "build_config": {
                "max_batch_size": s.max_batch_size if s else 16,
                "max_beam_width": s.max_beam_width if s else 1,
                "max_input_len": s.max_input_len if s else 2048,
                "max_seq_len": s.max_seq_len if s else 2560,
                "max_num_tokens": s.max_num_tokens if s else 8192,
            },
        }

    def __call__(self, out: Path, progress: Any) -> None:
        self.runs += 1
        progress("fake build")
        (out / "engine").mkdir()
        (out / "engine" / "rank0.engine").write_bytes(b"\x00engine-bytes" * 100)
        (out / "engine" / "config.json").write_text(json.dumps(self.engine_config()))
        if self.fail_after_files:
            raise KeyboardInterrupt  # the build is killed halfway
        (out / "tokenizer").mkdir()
        (out / "tokenizer" / "tokenizer.json").write_text("{}")
