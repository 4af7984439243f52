"""Performance model: physics sanity and agreement with the published measurements."""

from __future__ import annotations

import json
import math

import pytest

from llmctl.sizing import estimate, get_gpu, load_architecture
from llmctl.sizing.calibration import (
    THROUGHPUT_CSV,
    TTFT_CSV,
    ape,
    calibration_dir,
    load_rows,
    predict_throughput,
    predict_ttft,
    summary,
)
from llmctl.sizing.performance import _engine, _expert_fraction
from llmctl.sizing.report import json_safe

needs_calibration = pytest.mark.skipif(
    not (calibration_dir() / THROUGHPUT_CSV).is_file(), reason="../shared/calibration absent"
)

REQUIRED = {
    "fits",
    "reason",
    "kv_cache_tokens",
    "max_concurrency",
    "throughput_tokens_per_s",
    "ttft_ms",
    "tpot_ms",
    "latency_ms",
    "gpu",
    "precision",
    "tp",
}


def test_estimate_json_has_the_contract_fields():
    est = estimate(load_architecture("llama-3.1-8b"), get_gpu("h100"), "fp8", 1, 1000, 200)
    d = json.loads(json.dumps(json_safe(est.to_dict())))
    assert REQUIRED <= d.keys()
    assert d["fits"] is True and d["reason"] is None
    assert d["gpu"] == "H100-SXM-80GB" and d["tp"] == 1 and d["precision"] == "fp8"


def test_a_config_that_does_not_fit_has_a_reason_and_no_numbers():
    est = estimate(load_architecture("llama3.1-405b"), get_gpu("l4"), "fp8", 1, 1000, 200)
    d = json_safe(est.to_dict())
    assert d["fits"] is False and "weights need" in d["reason"]
    assert d["ttft_ms"] is None and d["throughput_tokens_per_s"] == 0.0
    json.dumps(d)  # valid JSON: no Infinity


def test_decode_at_batch_one_is_bandwidth_bound():
    arch = load_architecture("llama-3.1-8b")
    h100 = estimate(arch, get_gpu("h100"), "bf16", 1, 128, 128, concurrency=1)
    # 16 GB of weights over 3.35 TB/s: at least 4.8 ms per token, at most a few times that
    assert 4.8 < h100.tpot_ms < 10
    assert h100.bound.startswith("memory")
    h200 = estimate(arch, get_gpu("h200"), "bf16", 1, 128, 128, concurrency=1)
    assert h200.tpot_ms < h100.tpot_ms  # more bandwidth, faster decode
    fp8 = estimate(arch, get_gpu("h100"), "fp8", 1, 128, 128, concurrency=1)
    assert fp8.tpot_ms < 0.65 * h100.tpot_ms  # half the bytes to read


def test_large_batches_turn_compute_bound_and_raise_throughput():
    arch = load_architecture("llama-3.1-8b")
    gpu = get_gpu("h100")
    small = estimate(arch, gpu, "fp8", 1, 128, 128, concurrency=8)
    big = estimate(arch, gpu, "fp8", 1, 128, 128, concurrency=2048)
    # 256x the sequences for one weight read per step: several times the throughput, not 256x.
    ratio = big.throughput_tokens_per_s / small.throughput_tokens_per_s
    assert 5 < ratio < 256
    assert big.tpot_ms > small.tpot_ms
    assert big.bound.startswith("compute")


def test_queueing_beyond_the_kv_capacity_shows_in_ttft():
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    gpu = get_gpu("h100")
    sat = estimate(arch, gpu, "fp8", 1, 128, 2048)
    over = estimate(arch, gpu, "fp8", 1, 128, 2048, concurrency=4 * sat.max_concurrency)
    assert over.batch == sat.max_concurrency
    assert over.ttft_ms > 2 * over.tpot_ms * 2048  # waits about three whole answers
    assert over.latency_ms == pytest.approx(
        4 * (over.latency_ms - over.ttft_ms + sat.ttft_ms) / 1, rel=0.05
    )


def test_pcie_tensor_parallel_pays_for_its_link():
    arch = load_architecture("meta-llama/Llama-3.1-70B-Instruct")
    sxm = estimate(arch, get_gpu("h100"), "fp8", 4, 1000, 1000, concurrency=64)
    pcie = estimate(arch, get_gpu("h100-pcie"), "fp8", 4, 1000, 1000, concurrency=64)
    bw_ratio = 3350 / 2000
    # PCIe is slower than its bandwidth alone explains: the all-reduces cross PCIe
    assert pcie.tpot_ms / sxm.tpot_ms > bw_ratio * 1.1


def test_moe_reads_only_the_routed_experts_at_small_batch():
    arch = load_architecture("mixtral")
    assert _expert_fraction(arch, 1) == pytest.approx(0.25)
    assert _expert_fraction(arch, 64) == pytest.approx(1.0, abs=1e-3)
    e = _engine(arch, get_gpu("h100"), "fp8", 1)
    assert e.flops_per_token + e.expert_flops_per_token == pytest.approx(
        2 * arch.active_block_params
    )
    # One token reads the dense part and 2 of 8 experts: about a third of the weights.
    read = e.dense_bytes + e.expert_bytes * _expert_fraction(arch, 1)
    assert read < 0.35 * (e.dense_bytes + e.expert_bytes)
    dense_bigger = load_architecture("llama-3.1-70b")
    for backend in ("tensorrt", "pytorch"):
        moe = estimate(arch, get_gpu("h200"), "fp8", 1, 128, 128, 1, backend=backend)
        dense = estimate(dense_bigger, get_gpu("h200"), "fp8", 1, 128, 128, 1, backend=backend)
        # The PyTorch fit also charges grouped-GEMM tile padding for every touched expert.
        assert moe.tpot_ms < (0.5 if backend == "tensorrt" else 0.8) * dense.tpot_ms


@needs_calibration
def test_saturated_throughput_matches_published_measurements():
    rows = load_rows(THROUGHPUT_CSV)
    preds = [predict_throughput(r) for r in rows]
    errors = [ape(p, r.measured) for p, r in zip(preds, rows, strict=True)]
    median, _ = summary(errors)
    assert median <= 10.0
    for p, r in zip(preds, rows, strict=True):
        assert 0.5 < p / r.measured < 2.0, r


@needs_calibration
def test_long_output_collapse_of_70b_fp8_on_one_h100():
    rows = {
        r.gpu: r
        for r in load_rows(THROUGHPUT_CSV)
        if "70B" in r.model and r.tp == 1 and (r.isl, r.osl) == (128, 2048)
    }
    h100 = predict_throughput(rows["H100-SXM-80GB"])
    h200 = predict_throughput(rows["H200-SXM-141GB"])
    assert h100 == pytest.approx(912, rel=0.2)
    assert h200 == pytest.approx(4166, rel=0.2)
    assert h200 / h100 > 3  # measured 4.6x


@needs_calibration
def test_batch_one_ttft_of_dense_models():
    rows = [r for r in load_rows(TTFT_CSV) if "Mixtral" not in r.model]
    errors = [ape(predict_ttft(r), r.measured) for r in rows]
    assert summary(errors)[0] < 20.0
    assert all(math.isfinite(e) and e < 50 for e in errors)
