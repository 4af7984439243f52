"""Performance model: step time of an in-flight-batching engine, and what follows from it.

One decode step of a TP group processes the ``B`` sequences in flight plus the prefill tokens
in-flight batching fuses into it (in steady state ``B * ISL / OSL`` per step, since every
``OSL`` steps each slot takes a new request). Per GPU the step costs

* compute: 2 x active parameters x tokens (+ causal attention of the prefills) at MFU x peak,
* memory: the weights once (MoE: only the experts some token was routed to) plus every
  sequence's KV cache, at MBU x bandwidth,
* TP communication: two all-reduces of the step's activations per layer over the GPU link,

combined as a soft roofline ``(t_c^p + t_m^p)^(1/p)``: decode is bandwidth-bound at small batch
and turns compute-bound at large batch, with a smooth crossover rather than a kink (kernels do not
overlap perfectly). The batch is whatever the KV cache allows (the collapse of a model that nearly
fills its GPU), the requested concurrency, or the engine caps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from llmctl.sizing.architecture import Architecture
from llmctl.sizing.catalogue import Gpu
from llmctl.sizing.constants import efficiency, perf_constants
from llmctl.sizing.memory import (
    HIGH_PRECISION_BYTES,
    MAX_BATCH_SIZE,
    WEIGHT_BYTES,
    FitResult,
    check_fit,
    check_precision,
    kv_bytes_per_token,
    sequences_in_kv,
)

MAX_NUM_TOKENS_CAP = 32768  # trtllm-bench's cap on tokens per step (activation buffers)


@dataclass(frozen=True)
class _Engine:
    """Per-GPU quantities of one (model, GPU, precision, TP) combination."""

    arch: Architecture
    gpu: Gpu
    precision: str
    tp: int
    dense_bytes: float  # read every step: attention weights, lm_head, norms, router
    expert_bytes: float  # all experts' weights on this GPU
    kv_tok: float
    flops_per_token: float
    lm_head_flops: float
    attn_flops_coeff: float  # prefill attention FLOPs per GPU = coeff * isl^2
    peak: float
    bw: float
    p: float
    mfu: float
    mbu: float
    kv_eff: float  # paged-attention KV reads reach a lower share of bandwidth than GEMMs


def _engine(arch: Architecture, gpu: Gpu, precision: str, tp: int) -> _Engine:
    c = perf_constants()
    wb = WEIGHT_BYTES[precision]
    lm = arch.vocab_size * arch.hidden_size  # read as lm_head even when tied to the embeddings
    high = lm + arch.norm_params + arch.router_params
    mfu, mbu = efficiency(gpu.family, precision)
    if arch.is_moe:
        mfu *= float(c["moe_gemm_efficiency"])
    return _Engine(
        arch=arch,
        gpu=gpu,
        precision=precision,
        tp=tp,
        dense_bytes=(arch.dense_linear_params * wb + high * HIGH_PRECISION_BYTES) / tp,
        expert_bytes=arch.total_expert_params * wb / tp,
        kv_tok=kv_bytes_per_token(arch, precision, tp),
        flops_per_token=2.0 * arch.active_block_params / tp,
        lm_head_flops=2.0 * lm / tp,
        attn_flops_coeff=2.0 * arch.num_layers * arch.num_heads * arch.head_dim / tp,
        peak=gpu.peak_flops(precision),
        bw=gpu.bandwidth_gbs * 1e9,
        p=float(c["roofline_exponent"]),
        mfu=mfu,
        mbu=mbu,
        kv_eff=float(c["kv_read_efficiency"]),
    )


def _expert_fraction(arch: Architecture, tokens: float) -> float:
    """Share of experts some token in the step is routed to (uniform routing)."""
    if not arch.is_moe:
        return 1.0
    miss = 1.0 - arch.experts_per_token / arch.num_experts
    return 1.0 - miss ** max(tokens, 1.0)


def _comm_time(e: _Engine, tokens: float) -> float:
    """Two ring all-reduces of the step's activations per layer."""
    if e.tp == 1:
        return 0.0
    c = perf_constants()
    link = e.gpu.link_bytes_per_s(e.tp) * float(c["allreduce_efficiency"])
    size = tokens * e.arch.hidden_size * 2.0
    per = 2.0 * (e.tp - 1) / e.tp * size / link + float(c["allreduce_latency_us"]) * 1e-6
    return 2 * e.arch.num_layers * per


def step_time(e: _Engine, n_dec: float, n_pre: float, ctx_len: float, prefill_attn: float) -> float:
    """Seconds for one engine step: ``n_dec`` decode tokens over ``ctx_len`` cached tokens on
    average, ``n_pre`` prefill tokens whose attention costs ``prefill_attn`` FLOPs per GPU."""
    c = perf_constants()
    tokens = n_dec + n_pre
    # GEMMs: each reads its weights once and multiplies every token (soft roofline).
    flops = e.flops_per_token * tokens + e.lm_head_flops * max(n_dec, 1.0)
    t_c = flops / (e.peak * e.mfu)
    read = e.dense_bytes + e.expert_bytes * _expert_fraction(e.arch, tokens)
    t_m = read / (e.bw * e.mbu)
    t_gemm = (t_c**e.p + t_m**e.p) ** (1.0 / e.p)
    # Attention kernels: decode streams every sequence's KV cache; prefill is compute-bound.
    t_attn = n_dec * ctx_len * e.kv_tok / (e.bw * e.mbu * e.kv_eff)
    t_attn += prefill_attn / (e.peak * e.mfu)
    t = t_gemm + t_attn
    host = float(c["step_overhead_ms"]) * 1e-3 + n_dec * float(c["sequence_overhead_us"]) * 1e-6
    return t + _comm_time(e, tokens) + host


def _steady_step(e: _Engine, batch: float, isl: int, osl: int) -> float:
    """Step time with ``batch`` sequences decoding and their prefills amortised over OSL."""
    arrivals = batch / osl  # requests joining per step
    return step_time(
        e,
        n_dec=batch,
        n_pre=arrivals * isl,
        ctx_len=isl + osl / 2.0,
        prefill_attn=arrivals * e.attn_flops_coeff * isl * isl,
    )


def _prefill_time(e: _Engine, isl: int, batch: float, osl: int) -> float:
    """TTFT of one request entering an engine with ``batch - 1`` others decoding: its prompt is
    processed in chunks of max_num_tokens fused with their decode steps."""
    c = perf_constants()
    chunk = int(c["max_num_tokens"])
    others = max(batch - 1.0, 0.0)
    t = 0.0
    done = 0
    while done < isl:
        n = min(chunk, isl - done)
        attn = e.attn_flops_coeff * (n * done + n * n / 2.0) * 2.0
        t += step_time(e, n_dec=others, n_pre=n, ctx_len=isl + osl / 2.0, prefill_attn=attn)
        done += n
    return t + float(c["request_overhead_ms"]) * 1e-3


def batch1_ttft_ms(arch: Architecture, gpu: Gpu, precision: str, tp: int, isl: int) -> float:
    """First-token latency of a lone request (static batch 1), as TRT-LLM's older tables report."""
    e = _engine(arch, gpu, check_precision(precision), tp)
    return _prefill_time(e, isl, 1.0, 1) * 1e3


@dataclass(frozen=True)
class Estimate:
    """Predicted behaviour of one TP group (one replica) under a load."""

    model: str
    gpu: str
    precision: str
    tp: int
    isl: int
    osl: int
    concurrency: int | None
    fits: bool
    reason: str | None
    weights_gb_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    kv_cache_tokens: int
    max_concurrency: int
    batch: int
    throughput_tokens_per_s: float
    requests_per_s: float
    ttft_ms: float
    tpot_ms: float
    latency_ms: float
    bound: str
    memory: FitResult

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["memory"] = self.memory.to_dict()
        return d


def _bound(e: _Engine, batch: float, isl: int, osl: int) -> str:
    arrivals = batch / osl
    tokens = batch + arrivals * isl
    flops = e.flops_per_token * tokens + arrivals * e.attn_flops_coeff * isl * isl
    t_c = flops / (e.peak * e.mfu)
    read = e.dense_bytes + e.expert_bytes * _expert_fraction(e.arch, tokens)
    t_m = (read + batch * (isl + osl / 2.0) * e.kv_tok / e.kv_eff) / (e.bw * e.mbu)
    kind = "compute" if t_c > t_m else "memory-bandwidth"
    if _comm_time(e, tokens) > 0.3 * max(t_c, t_m):
        kind += "+interconnect"
    return kind


def estimate(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    isl: int,
    osl: int,
    concurrency: int | None = None,
    kv_fraction: float | None = None,
) -> Estimate:
    """Predict one TP group's throughput and latencies.

    Without ``concurrency``: the saturated maximum throughput, what ``trtllm-bench`` measures
    (as many sequences in flight as the KV cache and engine caps allow). With it: a closed loop
    of ``concurrency`` users each sending the next request when the last answer ends; beyond
    the batch the engine holds, requests queue and the queueing shows up in TTFT and latency.
    """
    precision = check_precision(precision)
    fit = check_fit(arch, gpu, precision, tp, isl, osl, kv_fraction=kv_fraction)
    common: dict[str, Any] = {
        "model": arch.name,
        "gpu": gpu.name,
        "precision": precision,
        "tp": tp,
        "isl": isl,
        "osl": osl,
        "concurrency": concurrency,
        "weights_gb_per_gpu": fit.weights_gb_per_gpu,
        "kv_bytes_per_token_per_gpu": fit.kv_bytes_per_token_per_gpu,
        "kv_cache_tokens": fit.kv_cache_tokens,
        "memory": fit,
    }
    if not fit.fits:
        return Estimate(
            **common,
            fits=False,
            reason=fit.reason,
            max_concurrency=0,
            batch=0,
            throughput_tokens_per_s=0.0,
            requests_per_s=0.0,
            ttft_ms=math.inf,
            tpot_ms=math.inf,
            latency_ms=math.inf,
            bound="does not fit",
        )
    e = _engine(arch, gpu, precision, tp)
    token_cap = int(MAX_NUM_TOKENS_CAP / (1.0 + isl / osl))
    cap = max(1, min(sequences_in_kv(fit.kv_cache_tokens, isl, osl), MAX_BATCH_SIZE, token_cap))
    batch = cap if concurrency is None else max(1, min(concurrency, cap))
    tpot = _steady_step(e, batch, isl, osl)
    ttft = _prefill_time(e, isl, batch, osl)
    service = ttft + (osl - 1) * tpot
    if concurrency is not None and concurrency > cap:
        # Closed loop, Little's law: N users share `cap` slots, each request waits its turn.
        latency = service * concurrency / cap
        ttft += latency - service
    else:
        latency = service
    users = batch if concurrency is None else max(1, concurrency)
    # Saturated throughput is the steady decode rate; in a closed loop, users / latency.
    rps = batch / (osl * tpot) if concurrency is None else users / latency
    return Estimate(
        **common,
        fits=True,
        reason=None,
        max_concurrency=cap,
        batch=batch,
        throughput_tokens_per_s=rps * osl,
        requests_per_s=rps,
        ttft_ms=ttft * 1e3,
        tpot_ms=tpot * 1e3,
        latency_ms=latency * 1e3,
        bound=_bound(e, batch, isl, osl),
    )
