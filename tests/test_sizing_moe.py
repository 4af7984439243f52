"""2026 models and GPUs: fine-grained MoE, MLA, windowed attention, NVFP4, PP/EP, the
PyTorch-backend calibration file and NIM's concurrency sweep."""

from __future__ import annotations

import csv

import pytest

from llmctl.errors import SizingError
from llmctl.sizing import check_fit, estimate, get_gpu, load_architecture
from llmctl.sizing.calibration import (
    PYTORCH_CSV,
    ape,
    calibration_dir,
    load_rows,
    predict_throughput,
    summary,
)
from llmctl.sizing.memory import kv_bytes_per_token, weight_bytes_per_gpu


@pytest.mark.parametrize(
    ("model", "total_b", "active_b"),
    [
        # Published totals/actives (model cards); ours are derived from the config alone.
        ("deepseek-ai/DeepSeek-R1-0528", 671.0, 37.0),
        ("Qwen/Qwen3-30B-A3B", 30.5, 3.3),
        ("Qwen/Qwen3-235B-A22B", 235.0, 22.0),
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 400.0, 17.0),
        ("openai/gpt-oss-120b", 116.8, 5.1),
    ],
)
def test_moe_parameter_counts_match_the_model_cards(model, total_b, active_b) -> None:
    arch = load_architecture(model)
    assert arch.total_params / 1e9 == pytest.approx(total_b, rel=0.02)
    # Model cards count active parameters without (gpt-oss) or with the embeddings.
    assert active_b * 0.95 <= arch.active_params / 1e9 <= active_b * 1.15


def test_mla_caches_one_latent_per_token_and_layer_on_every_gpu() -> None:
    ds = load_architecture("deepseek-r1")
    per_token = 61 * (512 + 64) * 1  # FP8 cache, no separate K and V
    assert kv_bytes_per_token(ds, "fp8") == per_token
    assert kv_bytes_per_token(ds, "fp8", tp=8) == per_token  # replicated, not split
    # A GQA layout of the same heads would cache 2 x 128 heads x 128: ~57x more.
    assert 2 * 61 * 128 * 128 / per_token > 50


def test_windowed_layers_stop_growing_at_their_window() -> None:
    oss = load_architecture("openai/gpt-oss-120b")
    assert (oss.window_layers, oss.window) == (18, 128)
    assert oss.kv_context(100) == pytest.approx(200)  # window not reached: every layer
    assert oss.kv_context(32_000) == pytest.approx(32_000 + 128)
    scout = load_architecture("llama-4-scout")
    assert (scout.window_layers, scout.window) == (36, 8192)
    assert scout.kv_context(4096) == pytest.approx(4 * 4096)


def test_expert_parallel_keeps_the_dense_part_whole_and_splits_the_experts() -> None:
    ds = load_architecture("deepseek-r1")
    tp8 = weight_bytes_per_gpu(ds, "fp4", 8)
    dep8 = weight_bytes_per_gpu(ds, "fp4", 8, ep=8)
    whole = weight_bytes_per_gpu(ds, "fp4", 1)
    experts = ds.total_expert_params * (0.5 + 1 / 16)
    # Attention, dense layers, shared experts and embeddings replicated; experts split by 8.
    assert dep8 == pytest.approx((whole - experts) + experts / 8)
    assert tp8 == pytest.approx(whole / 8) and dep8 > tp8
    assert weight_bytes_per_gpu(ds, "fp4", 1, pp=4) == pytest.approx(
        weight_bytes_per_gpu(ds, "fp4", 1) / 4
    )


def test_nvfp4_needs_blackwell_and_halves_fp8_weights() -> None:
    arch = load_architecture("llama-3.3-70b-instruct")
    assert not check_fit(arch, get_gpu("h100"), "fp4", 1, 1000, 1000).fits
    b200 = check_fit(arch, get_gpu("b200"), "fp4", 1, 1000, 1000)
    fp8 = check_fit(arch, get_gpu("b200"), "fp8", 1, 1000, 1000)
    assert b200.fits and b200.weights_gb_per_gpu < 0.6 * fp8.weights_gb_per_gpu


def test_ep_must_divide_the_experts() -> None:
    arch = load_architecture("Qwen/Qwen3-30B-A3B")
    fit = check_fit(arch, get_gpu("b200"), "fp4", 3, 1000, 1000, ep=3)
    assert not fit.fits and "EP 3" in fit.reason


needs_pytorch_rows = pytest.mark.skipif(
    not (calibration_dir() / PYTORCH_CSV).is_file(), reason="../shared/calibration absent"
)


@needs_pytorch_rows
def test_pytorch_file_total_and_per_gpu_columns_agree() -> None:
    """The unit trap: pages up to 1.0 printed group totals, later ones per GPU."""
    with (calibration_dir() / PYTORCH_CSV).open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            total = float(r["output_tokens_per_s_total"])
            per_gpu = float(r["output_tokens_per_s_per_gpu"])
            gpus = int(r["tp"]) * int(r["pp"])
            assert total == pytest.approx(per_gpu * gpus, rel=0.01, abs=1.0), r


@needs_pytorch_rows
def test_pytorch_backend_rows_within_the_reported_error() -> None:
    rows = load_rows(PYTORCH_CSV)
    assert {r.backend for r in rows} == {"pytorch"} and any(r.ep > 1 for r in rows)
    errors = [ape(predict_throughput(r), r.measured) for r in rows]
    median, p90 = summary(errors)
    assert median <= 15.0 and p90 <= 45.0  # in-sample; benchmarks/size_accuracy.py --cv for more


def test_nim_concurrency_sweep_saturates_where_nim_does() -> None:
    """NIM 1.8.0, Llama-3.3-70B FP8 TP2 on 2 x H100, 5,000/500 tokens: output throughput stops
    growing near 100 concurrent requests at about 920 tok/s and ITL levels at about 93 ms
    (docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance)."""
    arch, gpu = load_architecture("meta-llama/Llama-3.3-70B-Instruct"), get_gpu("h100")
    sat = estimate(arch, gpu, "fp8", 2, 5000, 500)
    assert 75 <= sat.max_concurrency <= 125
    assert sat.throughput_tokens_per_s == pytest.approx(920, rel=0.15)
    light = estimate(arch, gpu, "fp8", 2, 5000, 500, concurrency=1)
    assert light.tpot_ms == pytest.approx(18.6, rel=0.2)
    queued = estimate(arch, gpu, "fp8", 2, 5000, 500, concurrency=250)
    assert queued.ttft_ms == pytest.approx(88_605, rel=0.25)  # waiting for a KV slot


def test_unknown_backend_is_one_line() -> None:
    arch = load_architecture("llama-3.1-8b")
    with pytest.raises(SizingError, match="unknown backend 'onnx'; choose one of pytorch"):
        estimate(arch, get_gpu("h100"), "fp8", 1, 100, 100, backend="onnx")


def test_engine_and_pytorch_backends_have_their_own_constants() -> None:
    arch, gpu = load_architecture("llama-3.1-8b"), get_gpu("h100")
    engine = estimate(arch, gpu, "fp8", 1, 1000, 1000, backend="tensorrt")
    torch = estimate(arch, gpu, "fp8", 1, 1000, 1000, backend="pytorch")
    assert engine.backend == "tensorrt" and torch.backend == "pytorch"
    assert engine.throughput_tokens_per_s != torch.throughput_tokens_per_s


@pytest.mark.parametrize(("model", "total_b"), [("Qwen/Qwen3-8B", 8.2), ("Qwen/Qwen3-32B", 32.8)])
def test_dense_qwen3_parameter_counts_match_the_model_cards(model, total_b) -> None:
    arch = load_architecture(model)
    assert not arch.is_moe and arch.total_params / 1e9 == pytest.approx(total_b, rel=0.01)


def test_b300_is_in_the_catalogue_with_nvfp4() -> None:
    b300 = get_gpu("hgx-b300")
    assert b300.name == "B300" and "fp4" in b300.precisions
    assert b300.peak_flops("fp4") == 3 * b300.peak_flops("fp8")
