"""Memory arithmetic of the sizing model against values computed by hand from config.json."""

from __future__ import annotations

import pytest

from llmctl.errors import SizingError
from llmctl.sizing import check_fit, get_gpu, load_architecture
from llmctl.sizing.architecture import Architecture
from llmctl.sizing.memory import (
    kv_bytes_per_token,
    sequences_in_kv,
    weight_bytes_per_gpu,
    weight_bytes_total,
)

# Parameter counts from ../shared/calibration/README.md ("Derived from the configs").
PARAMS = {
    "meta-llama/Llama-3.1-8B-Instruct": (8.030e9, 8.030e9),
    "meta-llama/Llama-3.1-70B-Instruct": (70.554e9, 70.554e9),
    "meta-llama/Llama-3.1-405B-Instruct": (405.853e9, 405.853e9),
    "mistralai/Mistral-7B-v0.1": (7.242e9, 7.242e9),
    "mistralai/Mixtral-8x7B-v0.1": (46.703e9, 12.880e9),
    "Qwen/Qwen2.5-7B-Instruct": (7.616e9, 7.616e9),
    "Qwen/Qwen2.5-72B-Instruct": (72.706e9, 72.706e9),
    "HuggingFaceTB/SmolLM2-135M": (0.1345e9, 0.1345e9),
    "meta-llama/Llama-2-7b-hf": (6.738e9, 6.738e9),
    "meta-llama/Llama-2-70b-hf": (68.977e9, 68.977e9),
}

# KV bytes per token, whole model, 16-bit cache: 2 x layers x kv_heads x head_dim x 2.
KV_BF16 = {
    "llama-3.1-8b": 131072,
    "Llama-3.1-70B": 327680,
    "llama3.1-405b": 516096,
    "mixtral": 131072,
    "qwen2.5-7b-instruct": 57344,
    "SmolLM2-135M": 23040,
    "llama-2-7b-chat": 524288,
}


@pytest.mark.parametrize("model,expected", PARAMS.items())
def test_parameter_counts_match_the_published_derivation(model, expected):
    arch = load_architecture(model)
    total, active = expected
    assert arch.total_params == pytest.approx(total, rel=2e-3)
    assert arch.active_params == pytest.approx(active, rel=2e-3)


@pytest.mark.parametrize("model,expected", KV_BF16.items())
def test_kv_bytes_per_token(model, expected):
    arch = load_architecture(model)
    assert kv_bytes_per_token(arch, "bf16") == expected
    assert kv_bytes_per_token(arch, "fp8") == expected / 2


def test_llama_8b_weights_by_precision_keep_embeddings_16_bit():
    arch = load_architecture("meta-llama/Llama-3.1-8B-Instruct")
    embed = 128256 * 4096  # embed_tokens, and lm_head is the same size (not tied)
    norms = (2 * 32 + 1) * 4096
    linear = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    assert weight_bytes_total(arch, "bf16") == 2 * (linear + 2 * embed + norms)
    assert weight_bytes_total(arch, "fp8") == linear + 2 * (2 * embed + norms)
    int4 = linear * (0.5 + 2 / 128) + 2 * (2 * embed + norms)
    assert weight_bytes_total(arch, "int4_awq") == pytest.approx(int4)
    assert weight_bytes_per_gpu(arch, "fp8", 2) == weight_bytes_total(arch, "fp8") / 2


def test_70b_fp8_on_one_h100_fits_with_little_kv_room():
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    fit = check_fit(arch, get_gpu("h100"), "fp8", 1, 128, 2048, kv_fraction=0.95)
    assert fit.fits
    assert fit.weights_gb_per_gpu == pytest.approx(72.66, abs=0.05)  # 70.55 + 2.1 GB 16-bit emb
    # 81,559 MiB = 85.52 GB; what is left after weights and reserve, x 0.95, at 163,840 B/token
    free = fit.memory_gb_per_gpu - fit.weights_gb_per_gpu - fit.reserve_gb_per_gpu
    assert fit.kv_pool_gb_per_gpu == pytest.approx(0.95 * free, abs=0.01)
    assert (
        fit.kv_cache_tokens == int(fit.kv_pool_gb_per_gpu * 1e9 // 163840)
        or abs(fit.kv_cache_tokens - fit.kv_pool_gb_per_gpu * 1e9 / 163840) < 10
    )
    assert 10 < fit.max_concurrency < 40  # the long-output collapse: a handful of sequences
    h200 = check_fit(arch, get_gpu("h200"), "fp8", 1, 128, 2048, kv_fraction=0.95)
    assert h200.max_concurrency > 5 * fit.max_concurrency


def test_70b_bf16_does_not_fit_one_h100_and_says_why():
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    fit = check_fit(arch, get_gpu("H100-SXM-80GB"), "bf16", 1, 1024, 256)
    assert not fit.fits
    assert "weights need 141" in fit.reason
    assert check_fit(arch, get_gpu("H100-SXM-80GB"), "bf16", 2, 1024, 256).fits


def test_405b_needs_fp8_on_eight_h100():
    arch = load_architecture("llama3.1-405b")
    assert not check_fit(arch, get_gpu("h100"), "bf16", 8, 1024, 256).fits
    assert check_fit(arch, get_gpu("h100"), "fp8", 8, 1024, 256).fits


def test_kv_room_edge_one_sequence_more_or_less():
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    gpu = get_gpu("h100")
    fit = check_fit(arch, gpu, "fp8", 1, 128, 128, kv_fraction=0.95)
    longest = (fit.kv_cache_tokens // 64) * 64  # whole KV blocks of 64 tokens
    assert check_fit(arch, gpu, "fp8", 1, longest - 1000, 1000, kv_fraction=0.95).fits
    over = check_fit(arch, gpu, "fp8", 1, longest + 64 - 1000, 1000, kv_fraction=0.95)
    # Llama-3.1-70B's context (131,072) is longer than what the KV pool holds here.
    assert not over.fits
    assert "no room for the KV cache" in over.reason


def test_sequences_in_kv_counts_whole_blocks():
    assert sequences_in_kv(64 * 100, 100, 28) == 50  # 128 tokens = 2 blocks
    assert sequences_in_kv(64 * 100, 100, 29) == 33  # 129 tokens = 3 blocks
    assert sequences_in_kv(63, 1, 1) == 0


def test_context_window_and_precision_support_are_reasons():
    smol = load_architecture("HuggingFaceTB/SmolLM2-135M-Instruct")
    fit = check_fit(smol, get_gpu("l4"), "bf16", 1, 8000, 500)
    assert not fit.fits and "context window of 8192" in fit.reason
    fit = check_fit(smol, get_gpu("a100"), "fp8", 1, 100, 100)
    assert not fit.fits and "does not support fp8" in fit.reason
    fit = check_fit(smol, get_gpu("a100"), "fp4", 1, 100, 100)  # NVFP4 needs Blackwell
    assert not fit.fits and "does not support fp4" in fit.reason
    with pytest.raises(SizingError, match="unknown precision"):
        check_fit(smol, get_gpu("a100"), "fp2", 1, 100, 100)


def _gqa(kv_heads: int, heads: int = 32) -> Architecture:
    return Architecture(
        name="synthetic",
        num_layers=10,
        hidden_size=4096,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=128,
        intermediate_size=11008,
        vocab_size=32000,
        max_position_embeddings=32768,
    )


def test_tp_beyond_kv_heads_replicates_kv():
    arch = _gqa(kv_heads=2)
    per_head = 2 * 10 * 128 * 2  # K and V, 10 layers, head_dim 128, 16-bit
    assert kv_bytes_per_token(arch, "bf16", 1) == 2 * per_head
    assert kv_bytes_per_token(arch, "bf16", 2) == per_head
    assert kv_bytes_per_token(arch, "bf16", 4) == per_head  # 2 KV heads on 4 GPUs: replicated
    assert kv_bytes_per_token(arch, "bf16", 8) == per_head
    # so TP 8 holds no more sequences per GPU than TP 2 does beyond the weights it frees
    assert kv_bytes_per_token(_gqa(kv_heads=8), "bf16", 8) == per_head


def test_tp_must_divide_attention_heads():
    arch = _gqa(kv_heads=4, heads=20)
    fit = check_fit(arch, get_gpu("h100"), "bf16", 8, 100, 100)
    assert not fit.fits and "does not divide" in fit.reason
    fit = check_fit(arch, get_gpu("gh200"), "bf16", 2, 100, 100)
    assert not fit.fits and "per node" in fit.reason


def test_moe_memory_from_total_compute_from_active():
    arch = load_architecture("mistralai/Mixtral-8x7B-Instruct-v0.1")
    assert arch.is_moe and arch.num_experts == 8 and arch.experts_per_token == 2
    expert = 3 * 4096 * 14336
    assert arch.total_params - arch.active_params == 32 * 6 * expert
    fp8 = weight_bytes_total(arch, "fp8")
    assert fp8 == pytest.approx(46.70e9 + 0.26e9 + 0.25e9, rel=0.01)  # 16-bit emb + lm_head
    assert check_fit(arch, get_gpu("h100"), "fp8", 1, 1000, 1000).fits
    assert not check_fit(arch, get_gpu("h100"), "bf16", 1, 1000, 1000).fits


def test_mixtral_8x22b_needs_several_gpus():
    arch = load_architecture("mixtral-8x22b-v0.1")
    assert arch.total_params == pytest.approx(140.6e9, rel=0.01)
    assert arch.active_params == pytest.approx(39.2e9, rel=0.01)
    assert not check_fit(arch, get_gpu("h100"), "fp8", 1, 1000, 1000).fits
    assert check_fit(arch, get_gpu("h100"), "fp8", 2, 1000, 1000).fits
