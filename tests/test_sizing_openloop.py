"""Open loop (`llmctl size --rps`), the prefill queue behind TTFT under load, the three ways a
blueprint states its load, the derivation the plan prints and the contradiction rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmctl.blueprint import check_file, load_blueprint
from llmctl.errors import SizingError
from llmctl.sizing import estimate, get_gpu, load_architecture, plan, request_from_blueprint
from llmctl.sizing.architecture import architecture_from_config
from llmctl.sizing.load import implied_requests_per_day, peak_in_flight, think_rate
from llmctl.sizing.memory import kv_bytes_per_token, sequences_in_kv, weight_bytes_total
from llmctl.sizing.openloop import estimate_rate
from llmctl.sizing.queueing import prefill_wait

ROOT = Path(__file__).resolve().parents[1]
CHATBOT = ROOT / "blueprints" / "support-chatbot.yaml"
NIM = ("meta-llama/Llama-3.3-70B-Instruct", "H100-SXM-80GB", "fp8", 2, 5000, 500)


# --- memory arithmetic by hand -----------------------------------------------------------------


def test_moe_weights_with_shared_experts_and_dense_layers_by_hand() -> None:
    cfg = {
        "model_type": "deepseek_v3", "num_hidden_layers": 4, "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "vocab_size": 100,
        "intermediate_size": 256, "moe_intermediate_size": 32, "n_routed_experts": 8,
        "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
    }  # fmt: skip
    arch = architecture_from_config(cfg)
    attn = 4 * (64 * 64 + 2 * 64 * 64 + 64 * 64)  # q, k, v, o per layer, 4 layers
    dense_mlp = 1 * 3 * 64 * 256  # first layer dense
    shared = 3 * 3 * 64 * 32  # one shared expert on each of the 3 MoE layers
    experts = 3 * 8 * 3 * 64 * 32
    high = 100 * 64 * 2 + (2 * 4 + 1) * 64 + 3 * 64 * 8  # embeddings+lm_head, norms, router
    assert arch.dense_linear_params == attn + dense_mlp + shared
    assert arch.total_expert_params == experts
    assert weight_bytes_total(arch, "fp8") == attn + dense_mlp + shared + experts + 2 * high
    active = attn + dense_mlp + shared + 3 * 2 * 3 * 64 * 32 + high
    assert arch.active_params == active


def test_mla_kv_cache_by_hand() -> None:
    cfg = {
        "model_type": "deepseek_v3", "num_hidden_layers": 10, "hidden_size": 128,
        "num_attention_heads": 8, "vocab_size": 100, "intermediate_size": 256,
        "kv_lora_rank": 64, "qk_rope_head_dim": 16, "qk_nope_head_dim": 32, "v_head_dim": 32,
    }  # fmt: skip
    arch = architecture_from_config(cfg)
    # One latent of 64 + 16 per token and layer, 2 bytes at bf16, the same on each TP rank.
    assert kv_bytes_per_token(arch, "bf16") == 10 * (64 + 16) * 2
    assert kv_bytes_per_token(arch, "bf16", tp=4) == 10 * (64 + 16) * 2


def test_sliding_window_kv_by_hand() -> None:
    cfg = {
        "model_type": "gpt_oss", "num_hidden_layers": 4, "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100,
        "intermediate_size": 64, "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * 2,
    }  # fmt: skip
    arch = architecture_from_config(cfg)
    per_token = 2 * 2 * 2 * 16 * 1  # K and V, 2 full layers, 2 KV heads, 16 dims, fp8
    assert kv_bytes_per_token(arch, "fp8") == per_token
    # 1,000 tokens: full layers hold 1,000, windowed ones 128 (in full-layer units: +128).
    assert arch.kv_context(1000) == 1128
    assert sequences_in_kv(64 * 100, 900, 100, arch) == 100 // math.ceil(1128 / 64)


# --- queueing and the open loop ----------------------------------------------------------------


def test_prefill_wait_is_pollaczek_khinchine_plus_a_step_boundary() -> None:
    w = prefill_wait(rate_per_s=1.0, service_s=0.4, step_s=0.03)
    assert w.utilisation == pytest.approx(0.4)
    assert w.mean_s == pytest.approx(0.4 * 0.4 / (2 * 0.6) + 0.6 * 0.015)
    assert w.p95_s > w.mean_s
    assert prefill_wait(0.0, 0.4, 0.03).mean_s == pytest.approx(0.015)
    assert not prefill_wait(3.0, 0.4, 0.03).stable


def test_ttft_under_load_queues_behind_other_prefills() -> None:
    model, gpu, prec, tp, isl, osl = NIM
    arch, dev = load_architecture(model), get_gpu(gpu)
    ttft = [estimate(arch, dev, prec, tp, isl, osl, c).ttft_ms for c in (1, 5, 25, 50)]
    assert ttft == sorted(ttft)
    # NIM measured 689 ms at 25 concurrent; without the queue the model said ~400 ms.
    assert ttft[2] > 1.3 * ttft[0]
    assert abs(ttft[2] / 688.69 - 1) < 0.20  # the bar


def test_overlap_scheduler_delays_the_first_token_by_a_step() -> None:
    """The PyTorch backend reads a step's outputs back while the next step runs; TensorRT
    engines (no overlap scheduler) do not pay that step."""
    from llmctl.sizing.constants import perf_constants
    from llmctl.sizing.performance import _engine, _prefill_steps, _queued_prefill

    model, gpu, prec, tp, isl, osl = NIM
    arch, dev = load_architecture(model), get_gpu(gpu)
    torch = _engine(arch, dev, prec, tp, "pytorch")
    _, _, t_dec = _prefill_steps(torch, isl, 8.0, osl)
    base, _ = _queued_prefill(torch, isl, 8.0, osl, 0.0)
    assert float(perf_constants("pytorch")["overlap_scheduler_steps"]) == 1.0
    assert float(perf_constants("tensorrt").get("overlap_scheduler_steps", 0.0)) == 0.0
    front = (
        float(torch.c["serving_overhead_ms"]) * 1e-3 + float(torch.c["request_overhead_ms"]) * 1e-3
    )
    prefill, _, _ = _prefill_steps(torch, isl, 8.0, osl)
    assert base == pytest.approx(prefill + front + t_dec, rel=1e-9)


def test_a_long_prompt_holds_its_share_of_the_step_budget() -> None:
    """The prefill queue's service time: the prompt's own extra work plus the share of its
    steps' decode time its tokens take from the budget (isl / max_num_tokens)."""
    from llmctl.sizing.performance import _engine, _prefill_steps

    model, gpu, prec, tp, isl, osl = NIM
    e = _engine(load_architecture(model), get_gpu(gpu), prec, tp, "pytorch")
    chunk = int(e.c["max_num_tokens"])
    t, held, t_dec = _prefill_steps(e, isl, 25.0, osl)
    assert isl < chunk  # one step
    assert held == pytest.approx(t - t_dec + isl / chunk * t_dec, rel=1e-9)
    _, short, _ = _prefill_steps(e, 100, 25.0, osl)
    assert short < held / 10


def test_open_loop_obeys_littles_law_and_has_tails() -> None:
    model, gpu, prec, tp, isl, osl = NIM
    arch, dev = load_architecture(model), get_gpu(gpu)
    est = estimate_rate(arch, dev, prec, tp, isl, osl, 1.0)
    assert est.reason is None and est.rate_per_s == 1.0
    assert est.in_flight == pytest.approx(1.0 * est.latency_ms / 1e3, rel=0.01)
    assert est.ttft_p95_ms > est.ttft_ms and est.latency_p95_ms > est.latency_ms
    assert est.latency_ms == pytest.approx(est.ttft_ms + (osl - 1) * est.tpot_ms)
    slower = estimate_rate(arch, dev, prec, tp, isl, osl, 1.5)
    assert slower.ttft_ms > est.ttft_ms and slower.tpot_ms > est.tpot_ms


def test_a_rate_beyond_capacity_has_no_steady_state() -> None:
    model, gpu, prec, tp, isl, osl = NIM
    arch, dev = load_architecture(model), get_gpu(gpu)
    sat = estimate(arch, dev, prec, tp, isl, osl)
    est = estimate_rate(arch, dev, prec, tp, isl, osl, 3 * sat.requests_per_s)
    assert est.reason and "no steady state" in est.reason and math.isinf(est.ttft_ms)
    with pytest.raises(SizingError, match="positive"):
        estimate_rate(arch, dev, prec, tp, isl, osl, 0.0)


# --- the blueprint's load ----------------------------------------------------------------------


def test_three_ways_to_state_load() -> None:
    rps = peak_in_flight(
        peak_concurrent=None, concurrent=None, requests_per_day=10_000, peak_hour_share=0.1,
        latency_s=8.0, peak_rps=2.0,
    )  # fmt: skip
    assert rps.peak_rate_per_s == 2.0 and rps.is_rate and "peakRequestsPerSecond" in rps.basis
    think = peak_in_flight(
        peak_concurrent=None, concurrent=1000, requests_per_day=None, peak_hour_share=0.1,
        latency_s=8.0, think_time_s=592.0,
    )  # fmt: skip
    assert think.think_users == 1000 and think.is_rate
    assert think_rate(1000, 592.0, 8.0) == pytest.approx(1000 / 600)
    assert think.mean_in_flight == pytest.approx(1000 / 600 * 8)
    in_flight = peak_in_flight(
        peak_concurrent=12, concurrent=1000, requests_per_day=10_000, peak_hour_share=0.1,
        latency_s=8.0, peak_rps=2.0,
    )  # fmt: skip
    assert in_flight.in_flight == 12 and not in_flight.is_rate


def _chatbot_variant(tmp_path: Path, users: str) -> Path:
    text = CHATBOT.read_text()
    start = text.index("  users:\n")
    end = text.index("  slo:\n")
    path = tmp_path / "support-chatbot.yaml"
    path.write_text(text[:start] + users + text[end:])
    (tmp_path / "corpora").symlink_to(ROOT / "blueprints" / "corpora")
    return path


def test_seed_001_plans_an_open_loop_and_prints_the_derivation() -> None:
    result = plan(request_from_blueprint(load_blueprint(CHATBOT)))
    req, c = result.request, result.chosen
    assert req.is_rate and req.peak_rate_per_s == pytest.approx(10_000 * 0.1 / 3600)
    assert c.gpus_total <= 4  # a few GPUs, the order of the seed's three A40s
    text = " ".join(result.derivation)
    assert "Little's law" in text and "predicted mean latency" in text
    mean = c.rate_per_replica * c.latency_ms / 1e3
    assert f"{mean:.3g} per replica" in text


def test_think_time_blueprint_sizes_from_people(tmp_path: Path) -> None:
    users = "  users:\n    total: 20000\n    concurrent: 1000\n    thinkTimeS: 600\n"
    result = plan(request_from_blueprint(load_blueprint(_chatbot_variant(tmp_path, users))))
    assert result.request.think_users == 1000
    text = " ".join(result.derivation)
    assert "600 s think time" in text
    # 1,000 people asking every ~10 minutes: about 1.65 requests/s before headroom.
    rate = result.request.design_rate(result.chosen.latency_ms / 1e3) / 1.2
    assert 1000 / (600 + 8) < rate < 1000 / 600


def test_peak_requests_per_second_blueprint_is_an_open_loop(tmp_path: Path) -> None:
    users = "  users:\n    peakRequestsPerSecond: 1.5\n"
    result = plan(request_from_blueprint(load_blueprint(_chatbot_variant(tmp_path, users))))
    req, c = result.request, result.chosen
    assert req.peak_rate_per_s == 1.5 and req.design_rate() == pytest.approx(1.8)
    assert c.rate_per_replica * c.replicas == pytest.approx(1.8, rel=1e-3)
    assert c.rate_per_replica <= c.capacity_rate_per_s / c.replicas
    assert c.ttft_p95_ms <= req.llm_ttft_budget_ms and c.latency_p95_ms <= req.llm_latency_budget_ms


def test_contradiction_rule_turns_in_flight_into_requests_a_day(tmp_path: Path) -> None:
    assert implied_requests_per_day(1000, 8.0, 1 / 24) == pytest.approx(1000 / 8 * 86400)
    users = "  users:\n    peakConcurrent: 1000\n    requestsPerDay: 10000\n"
    result = check_file(_chatbot_variant(tmp_path, users))
    [warning] = [p for p in result.warnings if p.rule_id == "LLM-USR-001"]
    assert "4.5 million requests a day, not 10,000" in warning.message


def test_contradiction_rule_checks_rates_and_think_times(tmp_path: Path) -> None:
    users = (
        "  users:\n    concurrent: 1000\n    thinkTimeS: 30\n    requestsPerDay: 10000\n"
        "    peakRequestsPerSecond: 50\n"
    )
    result = check_file(_chatbot_variant(tmp_path, users))
    warned = [p for p in result.warnings if p.rule_id == "LLM-USR-001"]
    # 50/s and 1,000 people every 30 s are both far more than 10,000 a day.
    assert len(warned) == 2 and all("not 10,000" in p.message for p in warned)
    consistent = "  users:\n    concurrent: 1000\n    requestsPerDay: 10000\n    thinkTimeS: 3000\n"
    other = tmp_path / "consistent"
    other.mkdir()
    ok = check_file(_chatbot_variant(other, consistent))
    assert not [p for p in ok.problems if p.rule_id == "LLM-USR-001"]
