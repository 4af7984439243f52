"""GPU catalogue and model resolution."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmctl.errors import SizingError
from llmctl.sizing import get_gpu, list_gpus, load_architecture

REQUIRED_GPUS = [
    "A10G",
    "L4",
    "L40S",
    "A40",
    "A100-SXM-40GB",
    "A100-SXM-80GB",
    "H100-SXM-80GB",
    "H100-PCIe-80GB",
    "H100-NVL-94GB",
    "H200-SXM-141GB",
    "GH200-96GB",
    "B200",
]
REQUIRED_MODELS = [
    "Llama-3.1-8B",
    "Llama-3.1-70B",
    "Llama-3.1-405B",
    "Llama-3.3-70B",
    "Llama-2-7B",
    "Llama-2-70B",
    "Mistral-7B",
    "Mixtral-8x7B",
    "Mixtral-8x22B",
    "Qwen2.5-7B",
    "Qwen2.5-72B",
    "SmolLM2-135M",
]


@pytest.mark.parametrize("name", REQUIRED_GPUS)
def test_catalogue_gpus_are_complete(name):
    gpu = get_gpu(name.lower())
    assert gpu.name == name
    assert gpu.memory_bytes > 20e9 and gpu.bandwidth_gbs > 0 and gpu.price_per_hour > 0
    assert gpu.tflops["fp16"] > 0 and gpu.precisions


@pytest.mark.parametrize(
    "alias,name",
    [
        ("h100", "H100-SXM-80GB"),
        ("H100-80GB", "H100-SXM-80GB"),
        ("h200", "H200-SXM-141GB"),
        ("A100 80GB", "A100-SXM-80GB"),
    ],
)
def test_gpu_aliases(alias, name):
    assert get_gpu(alias).name == name


def test_prices_are_overridable_and_unknown_gpus_suggest():
    assert get_gpu("h100", {"H100": 2.5}).price_per_hour == 2.5
    assert get_gpu("h100", {"L4": 0.1}).price_per_hour == get_gpu("h100").price_per_hour
    assert len(list_gpus()) >= 12
    with pytest.raises(SizingError, match="did you mean"):
        get_gpu("H100-SXM-80G")


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_bundled_models_resolve_by_short_name(name):
    assert load_architecture(name.upper()).num_layers > 0


def test_hf_ids_match_case_insensitively():
    assert load_architecture("META-LLAMA/llama-3.1-8b-instruct").name == "Llama-3.1-8B"
    assert load_architecture("Llama-3.3-70B-Instruct").name == "Llama-3.3-70B"


def test_local_config_json_file_or_directory(tmp_path):
    config = {
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 512,
        "vocab_size": 1000,
        "max_position_embeddings": 1024,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    for target in (tmp_path, tmp_path / "config.json"):
        arch = load_architecture(str(target))
        assert arch.head_dim == 64 and arch.num_kv_heads == 2


def test_huggingface_cache_is_read_offline(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants as hub_constants

    snap = tmp_path / "models--acme--tiny-lm" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "models--acme--tiny-lm" / "refs").mkdir()
    (tmp_path / "models--acme--tiny-lm" / "refs" / "main").write_text("abc123")
    config = {
        "num_hidden_layers": 3,
        "hidden_size": 128,
        "num_attention_heads": 2,
        "vocab_size": 500,
    }
    (snap / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    arch = load_architecture("acme/tiny-lm")
    assert arch.num_layers == 3 and arch.name == "acme/tiny-lm"


def test_unknown_model_says_how_to_supply_a_config():
    with pytest.raises(SizingError, match="config.json"):
        load_architecture("nobody/not-a-model-xyz")


def test_importing_sizing_stays_pure_python():
    code = (
        "import sys, llmctl.sizing; "
        "bad = [m for m in ('numpy', 'matplotlib', 'huggingface_hub', 'rich') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
