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
    # The bar, in-sample; benchmarks/size_accuracy.py --cv prints leave-one-group-out.
    assert median <= 10.0 and p90 <= 25.0
    assert sum(1 for e in errors if e < 100.0) >= 0.95 * len(errors)  # predicted, and fitting


@needs_pytorch_rows
def test_release_1_0_moe_columns_ran_with_attention_dp() -> None:
    """TensorRT-LLM 1.0's perf overview ran MoE models with --ep and enable_attention_dp, so its
    "TP8" MoE columns are DEP8; its dense columns and 0.20's MoE columns (--tp only) stay TP."""
    rows = load_rows(PYTORCH_CSV)
    by = {(r.release, r.model.rsplit("/", 1)[-1], r.gpu, r.tp): r for r in rows}
    assert by[("1.0.0", "Qwen3-235B-A22B", "B200-180GB", 8)].ep == 8
    assert by[("1.0.0", "Llama-4-Maverick-17B-128E-Instruct", "H200-SXM-141GB", 8)].ep == 8
    assert by[("0.20.0", "Llama-4-Maverick-17B-128E-Instruct", "H100-SXM-80GB", 8)].ep == 1
    assert by[("1.0.0", "Llama-3.1-405B-Instruct", "H100-SXM-80GB", 8)].ep == 1
    assert by[("1.0.0", "Qwen3-30B-A3B", "B200-180GB", 1)].ep == 1


def test_ep_collectives_move_every_other_ranks_tokens_whatever_the_top_k() -> None:
    """All-gather + reduce-scatter per MoE layer: each GPU receives ep-1 ranks' activations, so
    the volume grows with ep and does not depend on how many experts a token picks."""
    from llmctl.sizing.performance import _comm_time, _engine

    arch, gpu = load_architecture("Qwen/Qwen3-235B-A22B"), get_gpu("b200")
    t = {ep: _comm_time(_engine(arch, gpu, "fp4", ep, ep=ep), 256.0) for ep in (2, 4, 8)}
    c = _engine(arch, gpu, "fp4", 2, ep=2).c
    latency = 2 * arch.moe_layers * float(c["allreduce_latency_us"]) * 1e-6
    # Bandwidth part scales as (ep - 1): 1 : 3 : 7.
    assert (t[4] - latency) / (t[2] - latency) == pytest.approx(3.0, rel=1e-6)
    assert (t[8] - latency) / (t[2] - latency) == pytest.approx(7.0, rel=1e-6)
    link = gpu.link_bytes_per_s(2) * float(c["allreduce_efficiency"])
    link *= float(c["ep_collective_efficiency"])
    by_hand = 2 * arch.moe_layers * (256.0 * arch.hidden_size * 2.0 / link) + latency
    assert t[2] == pytest.approx(by_hand, rel=1e-9)


def test_pipeline_stage_steps_pay_their_hand_over() -> None:
    from llmctl.sizing.performance import _engine, step_time

    arch, gpu = load_architecture("llama-3.3-70b"), get_gpu("rtx-pro-6000")
    flat = _engine(arch, gpu, "fp4", 1, backend="pytorch")
    staged = _engine(arch, gpu, "fp4", 1, backend="pytorch", pp=2)
    extra = float(staged.c["pp_step_overhead_ms"]) * 1e-3
    assert extra > 0  # fitted to the RTX PRO 6000 PP rows
    one = step_time(flat, 64.0, 0.0, 1000.0, 0.0)
    half = step_time(staged, 64.0, 0.0, 1000.0, 0.0)
    # A stage does half the layers' work plus its hand-over (and a PP send of activations).
    assert half > extra and half < one / 2 + extra + 1e-3


def test_nim_concurrency_sweep_saturates_where_nim_does() -> None:
    """NIM 1.8.0, Llama-3.3-70B FP8 TP2 on 2 x H100, 5,000/500 tokens: output throughput stops
    growing near 100 concurrent requests at about 920 tok/s and ITL levels at about 93 ms
    (docs.nvidia.com/nim/benchmarking/llm/1.0.0/performance)."""
    arch, gpu = load_architecture("meta-llama/Llama-3.3-70B-Instruct"), get_gpu("h100")
    sat = estimate(arch, gpu, "fp8", 2, 5000, 500)
    assert 75 <= sat.max_concurrency <= 125
    assert sat.throughput_tokens_per_s == pytest.approx(920, rel=0.15)
    light = estimate(arch, gpu, "fp8", 2, 5000, 500, concurrency=1)
    # Every PyTorch-backend row is saturated, so batch-1 decode is an extrapolation there (the
    # fit leaves no per-step floor: 14 ms against NIM's 18.6); the engine fit, which saw
    # low-load online rows, comes within 20%.
    assert light.tpot_ms == pytest.approx(18.6, rel=0.3)
    engine = estimate(arch, gpu, "fp8", 2, 5000, 500, concurrency=1, backend="tensorrt")
    assert engine.tpot_ms == pytest.approx(18.6, rel=0.2)
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
