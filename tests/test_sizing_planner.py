"""The planner's choices on small synthetic GPU catalogues, and the blueprint mapping."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from llmctl.errors import SizingError
from llmctl.sizing import SizingRequest, plan, request_from_blueprint
from llmctl.sizing import catalogue as catalogue_module
from llmctl.sizing.planner import HOURS_PER_MONTH


def _gpu(memory_gib, bw, tflops16, price, link=900, max_tp=8):
    return {
        "family": "hopper",
        "memory_mib": memory_gib * 1024,
        "bandwidth_gbs": bw,
        "tflops": {"fp16": tflops16, "fp8": 2 * tflops16},
        "precisions": ["fp16", "bf16", "fp8", "int4_awq"],
        "interconnect": {"type": "test", "bandwidth_gbs": link},
        "max_tp": max_tp,
        "price_per_hour": price,
    }


@pytest.fixture
def catalogue(monkeypatch):
    """Replace the shipped GPU catalogue by the one the test writes into the returned dict."""
    gpus: dict = {}
    real = catalogue_module.load_data

    def fake(name):
        return {"gpus": gpus} if name == "gpus.yaml" else real(name)

    monkeypatch.setattr(catalogue_module, "load_data", fake)
    return gpus


def _request(**kw):
    base = {
        "model": "llama-3.1-8b",
        "isl": 1000,
        "osl": 200,
        "peak_concurrency": 16,
        "ttft_p95_ms": 2000,
        "latency_p95_ms": 20000,
        "precisions": ("bf16",),
    }
    base.update(kw)
    return SizingRequest(**base)


def test_same_gpu_cheaper_price_wins(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    catalogue["FAST-CHEAP"] = _gpu(80, 3350, 990, price=2.0)
    result = plan(_request())
    assert result.gpu == "FAST-CHEAP"
    assert result.tp == 1 and result.replicas == 1
    assert result.monthly_cost_usd == pytest.approx(2.0 * HOURS_PER_MONTH)
    assert {c.gpu for c in result.candidates} == {"FAST", "FAST-CHEAP"}


def test_a_gpu_too_small_is_rejected_as_not_fitting(catalogue):
    catalogue["TINY"] = _gpu(12, 300, 120, price=0.1, link=32, max_tp=1)
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    result = plan(_request())
    assert result.gpu == "FAST"
    tiny = [r for r in result.rejected if r.gpu == "TINY" and r.tp == 1]
    assert tiny and tiny[0].category == "does not fit" and "weights need" in tiny[0].reason


def test_a_slow_gpu_misses_ttft_and_the_reason_says_so(catalogue):
    catalogue["SLOW"] = _gpu(80, 300, 20, price=0.5)
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    result = plan(_request(ttft_p95_ms=300, tp=1))
    assert result.gpu == "FAST"
    slow = [r for r in result.rejected if r.gpu == "SLOW"]
    assert slow[0].category == "misses TTFT" and "TTFT p95" in slow[0].reason


def test_more_users_need_more_replicas_and_cost_more(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    few = plan(_request(peak_concurrency=8, latency_p95_ms=8000, tp=1))
    many = plan(_request(peak_concurrency=800, latency_p95_ms=8000, tp=1))
    assert many.replicas > few.replicas
    assert many.monthly_cost_usd > few.monthly_cost_usd
    assert many.capacity_concurrency >= many.request.design_concurrency


def test_headroom_and_retrieval_budget_are_applied(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    req = _request(peak_concurrency=100, headroom=0.2, retrieval_budget_ms=500)
    assert req.design_concurrency == 120
    assert req.llm_ttft_budget_ms == 1500
    result = plan(req)
    assert result.chosen.ttft_p95_ms <= 1500
    assert result.chosen.latency_p95_ms <= 19500
    assert any("retrieval" in a for a in result.assumptions)


def test_budget_rejections_and_no_solution_explained(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    with pytest.raises(SizingError, match="over budget"):
        plan(_request(monthly_budget_usd=100))


def test_unmeetable_slo_raises_with_the_closest_miss(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    with pytest.raises(SizingError, match="no configuration.*misses"):
        plan(_request(latency_p95_ms=50, ttft_p95_ms=40))


def test_retrieval_eating_the_whole_slo_is_an_error(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    with pytest.raises(SizingError, match="leaves nothing"):
        plan(_request(ttft_p95_ms=100, retrieval_budget_ms=100))


def test_replica_limit_rejects_configurations(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    with pytest.raises(SizingError, match="replicas <= 1"):
        plan(_request(peak_concurrency=5000, replicas_max=1, latency_p95_ms=8000, tp=1))


def test_plan_to_dict_has_the_chosen_fields(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    d = plan(_request()).to_dict()
    for key in (
        "gpu",
        "precision",
        "tp",
        "replicas",
        "gpus_total",
        "max_batch_size",
        "kv_cache_tokens",
        "ttft_ms",
        "tpot_ms",
        "latency_ms",
        "throughput_tokens_per_s",
        "monthly_cost_usd",
        "assumptions",
        "candidates",
        "rejected",
    ):
        assert key in d


def test_real_catalogue_prefers_fp8_h100_for_the_policy_assistant():
    result = plan(
        SizingRequest(
            model="meta-llama/Llama-3.1-8B-Instruct",
            isl=3072,
            osl=512,
            peak_concurrency=64,
            ttft_p95_ms=1500,
            latency_p95_ms=10000,
            retrieval_budget_ms=150,
            gpus=("L4", "L40S", "A100-SXM-80GB", "H100-SXM-80GB"),
            replicas_min=2,
            replicas_max=4,
            monthly_budget_usd=15000,
        )
    )
    assert result.monthly_cost_usd <= 15000
    assert result.replicas >= 2
    assert result.chosen.latency_p95_ms <= 9850


def _blueprint(**over):
    bp = SimpleNamespace(
        requirements=SimpleNamespace(
            users=SimpleNamespace(
                total=4000,
                peak_concurrent=64,
                requests_per_day=1,
                growth_factor=2,
                concurrent=None,
                peak_hour_share=0.1,
                growth=(),
            ),
            slo=SimpleNamespace(ttft_p95_ms=1500, latency_p95_ms=10000),
        ),
        model=SimpleNamespace(
            id="meta-llama/Llama-3.1-8B-Instruct",
            precision="auto",
            max_input_tokens=3072,
            max_output_tokens=512,
        ),
        engine=SimpleNamespace(
            tensor_parallel="auto",
            quantization="auto",
            kv_cache_free_gpu_mem_fraction=0.9,
            max_batch_size="auto",
        ),
        capacity=SimpleNamespace(
            gpu="auto",
            gpu_candidates=("L4", "H100-SXM-80GB"),
            replicas=SimpleNamespace(min=2, max=4),
            monthly_budget_usd=15000.0,
            headroom=0.2,
            gpu_prices={"L4": 0.7},
        ),
        retrieval=SimpleNamespace(enabled=True, latency_budget_ms=150),
    )
    for path, value in over.items():
        obj = bp
        *head, last = path.split("__")
        for h in head:
            obj = getattr(obj, h)
        setattr(obj, last, value)
    return bp


def test_request_from_blueprint_maps_every_field():
    req = request_from_blueprint(_blueprint())
    assert req.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert (req.isl, req.osl) == (3072, 512)
    assert req.peak_concurrency == 64 and req.growth_factor == 2
    assert (req.ttft_p95_ms, req.latency_p95_ms, req.retrieval_budget_ms) == (1500, 10000, 150)
    assert req.precisions is None and req.tp is None
    assert req.gpus == ("L4", "H100-SXM-80GB")
    assert (req.replicas_min, req.replicas_max) == (2, 4)
    assert req.monthly_budget_usd == 15000 and req.headroom == 0.2
    assert req.gpu_prices == {"L4": 0.7} and req.kv_fraction == 0.9


def test_request_from_blueprint_fixed_choices_and_no_retrieval():
    req = request_from_blueprint(
        _blueprint(
            model__precision="fp8",
            engine__tensor_parallel=2,
            capacity__gpu="H200",
            retrieval__enabled=False,
        )
    )
    assert req.precisions == ("fp8",) and req.tp == 2 and req.gpus == ("H200",)
    assert req.retrieval_budget_ms == 0
    req = request_from_blueprint(_blueprint(engine__quantization="int4_awq"))
    assert req.precisions == ("int4_awq",)


def test_growth_prefers_configurations_that_can_scale_and_warns_otherwise(catalogue):
    catalogue["FAST"] = _gpu(80, 3350, 990, price=4.0)
    today = plan(_request(peak_concurrency=64, latency_p95_ms=8000, tp=1))
    assert not today.warnings
    grown = plan(
        _request(peak_concurrency=64, latency_p95_ms=8000, tp=1, growth_factor=100, replicas_max=4)
    )
    assert grown.replicas == today.replicas  # cost is for today's peak
    assert grown.replicas_at_growth > 4
    assert grown.warnings and "replicas.max" in grown.warnings[0]
