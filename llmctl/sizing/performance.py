"""Performance model: step time of an in-flight-batching engine, and what follows from it.

One decode step of a TP group processes the ``B`` sequences in flight plus the prefill tokens
in-flight batching fuses into it (in steady state ``B * ISL / OSL`` per step, since every
``OSL`` steps each slot takes a new request). Per GPU the step costs

* compute: 2 x active parameters x tokens (+ causal attention of the prefills) at MFU x peak,
* memory: the weights once plus every sequence's KV cache, at MBU x bandwidth; routed experts
  (only those some token reached) stream their weights while their grouped GEMMs work through
  padded row tiles, so for them the longer of the two counts,
* full-hidden-state traffic TP does not divide (norms, residuals, activations),
* TP communication: two all-reduces of the step's activations per layer over the GPU link,

the dense GEMMs combined as a soft roofline ``(t_c^p + t_m^p)^(1/p)``: decode is bandwidth-bound
at small batch and turns compute-bound at large batch, with a smooth crossover rather than a
kink (kernels do not overlap perfectly). The batch is whatever the KV cache allows (the collapse
of a model that nearly fills its GPU), the requested concurrency, or the engine caps.

Pipeline parallelism splits the layers into ``pp`` stages that work on ``pp`` micro-batches at
once (a token takes ``pp`` stage steps); expert parallelism is TensorRT-LLM's DEP layout:
attention data parallel (each GPU decodes its own sequences with the whole non-expert model)
and the experts split over ``ep`` GPUs, an all-gather and a reduce-scatter per MoE layer.
Efficiencies are per execution backend (``constants.BACKENDS``). TTFT under load adds the wait
for the prefills ahead of a new request (``queueing``; the open loop is ``openloop``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from llmctl.sizing.architecture import Architecture
from llmctl.sizing.catalogue import Gpu
from llmctl.sizing.constants import DEFAULT_BACKEND, check_backend, efficiency, perf_constants
from llmctl.sizing.memory import (
    HIGH_PRECISION_BYTES,
    MAX_BATCH_SIZE,
    WEIGHT_BYTES,
    FitResult,
    check_fit,
    check_precision,
    expert_bytes_per_weight,
    kv_bytes_per_token,
    sequences_in_kv,
)
from llmctl.sizing.queueing import PrefillWait, prefill_wait

MAX_NUM_TOKENS_CAP = 32768  # trtllm-bench's cap on tokens per step (activation buffers)


@dataclass(frozen=True)
class _Engine:
    """Per-GPU quantities of one (model, GPU, precision, TP, PP, EP) combination; per-layer
    quantities cover this GPU's pipeline stage."""

    arch: Architecture
    gpu: Gpu
    precision: str
    tp: int
    pp: int
    ep: int
    c: dict[str, Any]  # the backend's constants
    dense_bytes: float  # read every step: attention weights, lm_head, norms, router
    expert_bytes: float  # this GPU's experts
    kv_tok: float
    flops_per_token: float  # dense part (attention, dense MLPs, shared experts)
    expert_flops_per_token: float  # routed experts
    lm_head_flops: float
    attn_flops_coeff: float  # prefill attention FLOPs per GPU = coeff * isl^2
    peak: float
    expert_peak: float  # the experts' GEMM rate (lower when their format needs dequantising)
    bw: float
    p: float
    mfu: float
    mbu: float
    kv_eff: float  # paged-attention KV reads reach a lower share of bandwidth than GEMMs
    layers: float  # layers of this stage

    @property
    def ranks(self) -> int:
        """GPUs that hold sequences of their own (attention data parallel), else 1."""
        return self.ep if self.ep > 1 else 1

    # The step's terms that do not depend on the batch, computed once per engine: the planner's
    # open-loop search evaluates ``step_time`` about 10^5 times per blueprint.
    @cached_property
    def compute_rate(self) -> float:
        return self.peak * self.mfu

    @cached_property
    def stream_rate(self) -> float:
        return self.bw * self.mbu

    @cached_property
    def comm_line(self) -> tuple[float, float]:
        """(seconds per token, seconds per step) of the step's collectives: linear in tokens."""
        fixed = _comm_time(self, 0.0)
        return _comm_time(self, 1.0) - fixed, fixed

    @cached_property
    def host_line(self) -> tuple[float, float]:
        """(seconds per decoding sequence, seconds per step) outside the GPU kernels' work."""
        c = self.c
        fixed = float(c["step_overhead_ms"]) * 1e-3
        # Kernel launches and synchronisation of each layer's kernels, when no CUDA graph
        # hides them.
        fixed += self.layers * float(c.get("layer_overhead_us", 0.0)) * 1e-6
        if self.pp > 1:
            # Each stage step hands its micro-batch to the next stage and waits for the one
            # behind (send/receive, synchronisation, the executor loop): a fitted constant.
            fixed += float(c.get("pp_step_overhead_ms", 0.0)) * 1e-3
        return float(c["sequence_overhead_us"]) * 1e-6, fixed

    @cached_property
    def act_per_token(self) -> float:
        """Seconds of full-hidden-state traffic per token (norms, residuals, activations)."""
        passes = float(self.c["activation_passes"])
        return passes * self.layers * self.arch.hidden_size * 2.0 / self.stream_rate


def _engine(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    backend: str = DEFAULT_BACKEND,
    pp: int = 1,
    ep: int = 1,
) -> _Engine:
    c = perf_constants(backend)
    wb = WEIGHT_BYTES[precision]
    lm = arch.vocab_size * arch.hidden_size  # read as lm_head even when tied to the embeddings
    high = lm + arch.norm_params + arch.router_params
    mfu, mbu = efficiency(gpu.family, precision, backend)
    dp = ep > 1  # attention data parallel: dense part whole on every GPU
    split = 1 if dp else tp
    dense_flops = 2.0 * arch.dense_linear_params / split
    expert_flops = 2.0 * arch.moe_layers * arch.experts_per_token * arch.expert_params
    expert_flops /= 1 if dp else tp
    return _Engine(
        arch=arch,
        gpu=gpu,
        precision=precision,
        tp=tp,
        pp=pp,
        ep=ep,
        c=c,
        dense_bytes=(arch.dense_linear_params * wb + high * HIGH_PRECISION_BYTES) / (split * pp),
        expert_bytes=arch.total_expert_params
        * expert_bytes_per_weight(arch, precision)
        / ((ep if dp else tp) * pp),
        kv_tok=kv_bytes_per_token(arch, precision, tp, pp, ep),
        flops_per_token=dense_flops / pp,
        expert_flops_per_token=expert_flops / pp,
        lm_head_flops=2.0 * lm / split / pp,
        attn_flops_coeff=2.0
        * arch.num_layers
        * arch.num_heads
        * arch.attention_head_dim
        / (split * pp),
        peak=gpu.peak_flops(precision),
        expert_peak=_expert_peak(arch, gpu, precision, c),
        bw=gpu.bandwidth_gbs * 1e9,
        p=float(c["roofline_exponent"]),
        mfu=mfu,
        mbu=mbu,
        kv_eff=float(c["kv_read_efficiency"]),
        layers=arch.num_layers / pp,
    )


def _expert_peak(arch: Architecture, gpu: Gpu, precision: str, c: dict[str, Any]) -> float:
    """FLOP/s of the expert GEMMs. Experts shipped in FP4 (gpt-oss's MXFP4) on a GPU without
    FP4 tensor cores are dequantised to 16-bit in the kernel: a weight-only GEMM."""
    if arch.expert_weight_bytes and "fp4" not in gpu.precisions:
        return gpu.peak_flops("fp16") * float(c["weight_only_gemm_efficiency"])
    return gpu.peak_flops(precision)


def _expert_fraction(arch: Architecture, tokens: float) -> float:
    """Share of experts some token in the step is routed to (uniform routing)."""
    if not arch.is_moe:
        return 1.0
    miss = 1.0 - arch.experts_per_token / arch.num_experts
    return 1.0 - miss ** max(tokens, 1.0)


def _expert_gemm_time(e: _Engine, tokens: float) -> float:
    """Seconds of routed-expert GEMMs for ``tokens`` on this GPU.

    A grouped GEMM gives each expert only the rows (tokens) routed to it, and tensor cores work
    in tiles: every expert some token reaches costs about ``moe_half_tokens`` rows more than it
    gets. Fine-grained MoE (128 to 256 experts, top-1 to top-8) touches many experts with few
    rows each, so its experts run far below peak at any batch a GPU can hold.
    """
    if not e.arch.is_moe or e.expert_flops_per_token == 0:
        return 0.0
    arch = e.arch
    per_row = e.expert_flops_per_token / arch.experts_per_token
    touched = arch.num_experts * _expert_fraction(arch, tokens * e.ranks) / e.ranks
    rows = tokens * arch.experts_per_token + touched * float(e.c["moe_half_tokens"])
    eff = float(e.c["moe_gemm_efficiency"])
    return per_row * rows / (e.expert_peak * e.mfu * eff)


def _comm_time(e: _Engine, tokens: float) -> float:
    """TP: two ring all-reduces of the step's activations per layer. EP (attention DP): an
    all-gather of every rank's tokens before each MoE layer and a reduce-scatter after it (each
    GPU receives and returns ``ep - 1`` ranks' activations). PP: each stage hands its
    micro-batch's activations to the next (a send and a synchronisation per step)."""
    c = e.c
    size = tokens * e.arch.hidden_size * 2.0
    t = 0.0
    if e.pp > 1:
        link = e.gpu.link_bytes_per_s(e.pp) * float(c["allreduce_efficiency"])
        t += size / link + float(c["allreduce_latency_us"]) * 1e-6
    group = e.ep if e.ep > 1 else e.tp
    if group == 1:
        return t
    link = e.gpu.link_bytes_per_s(group) * float(c["allreduce_efficiency"])
    latency = float(c["allreduce_latency_us"]) * 1e-6
    if e.ep > 1:
        # TensorRT-LLM's default attention-DP MoE: every rank all-gathers the others' tokens,
        # runs its own experts on all of them and reduce-scatters the results back, so each
        # GPU receives (and returns) ``ep - 1`` ranks' activations per MoE layer whatever the
        # top-k. These collectives reach a share of the link of their own.
        link *= float(c["ep_collective_efficiency"])
        moe_layers = e.arch.moe_layers / e.pp
        per = (group - 1) * size / link + latency
        return t + 2 * moe_layers * per
    per = 2.0 * (group - 1) / group * size / link + latency
    return t + 2 * e.layers * per


def step_time(e: _Engine, n_dec: float, n_pre: float, ctx_len: float, prefill_attn: float) -> float:
    """Seconds for one engine step of one GPU: ``n_dec`` decode tokens over ``ctx_len`` cached
    tokens on average, ``n_pre`` prefill tokens whose attention costs ``prefill_attn`` FLOPs."""
    tokens = n_dec + n_pre
    # GEMMs: each reads its weights once and multiplies every token (soft roofline).
    flops = e.flops_per_token * tokens + e.lm_head_flops * max(n_dec, 1.0)
    t_c = flops / e.compute_rate
    t_m = e.dense_bytes / e.stream_rate
    t_gemm = (t_c**e.p + t_m**e.p) ** (1.0 / e.p)
    # Routed experts (under attention DP they see every rank's tokens): a grouped GEMM streams
    # each touched expert's weights while its tensor cores work through the padded row tiles,
    # so the two overlap; at small batch the stream sets the time, at large batch the tiles.
    if e.expert_bytes:
        t_exp_m = e.expert_bytes * _expert_fraction(e.arch, tokens * e.ranks) / e.stream_rate
        t_gemm += max(_expert_gemm_time(e, tokens), t_exp_m)
    # Attention kernels: decode streams every sequence's KV cache; prefill is compute-bound.
    t_attn = n_dec * e.arch.kv_context(ctx_len) * e.kv_tok / (e.stream_rate * e.kv_eff)
    t_attn += prefill_attn / e.compute_rate
    # Norms, residual adds, activations and collective buffers work on the full hidden state of
    # every token on every TP rank (memory traffic tensor parallelism does not divide); then the
    # collectives, linear in the step's tokens.
    per_token, per_step = e.comm_line
    t = t_gemm + t_attn + e.act_per_token * tokens + per_token * tokens + per_step
    per_seq, fixed = e.host_line
    return t + n_dec * per_seq + fixed


def _steady_step(e: _Engine, batch: float, isl: int, osl: int) -> float:
    """Step time of one GPU with ``batch`` sequences decoding and their prefills amortised."""
    arrivals = batch / osl  # requests joining per step
    return step_time(
        e,
        n_dec=batch,
        n_pre=arrivals * isl,
        ctx_len=isl + osl / 2.0,
        prefill_attn=arrivals * e.attn_flops_coeff * isl * isl,
    )


def _prefill_steps(e: _Engine, isl: int, batch: float, osl: int) -> tuple[float, float, float]:
    """One request's prompt entering a GPU with ``batch - 1`` others decoding, processed in chunks
    of max_num_tokens fused with their decode steps: (seconds of its steps on one pipeline
    stage, the time it holds the engine against later prompts, one decode-only step). The held
    time is what its prompt adds over decode-only steps plus its share of those steps."""
    chunk = int(e.c["max_num_tokens"])
    others = max(batch - 1.0, 0.0)
    ctx = isl + osl / 2.0
    t_dec = step_time(e, n_dec=others, n_pre=0.0, ctx_len=ctx, prefill_attn=0.0)
    t = 0.0
    done = steps = 0
    while done < isl:
        n = min(chunk, isl - done)
        attn = e.attn_flops_coeff * (n * done + n * n / 2.0) * 2.0
        t += step_time(e, n_dec=others, n_pre=n, ctx_len=ctx, prefill_attn=attn)
        done += n
        steps += 1
    # Its prompt holds isl / max_num_tokens of the steps' token budget: later prompts cannot use
    # that share, so it is charged the same share of the steps' decode time too.
    held = max(t - steps * t_dec, 0.0) + isl / chunk * t_dec  # isl / chunk <= steps
    return t, held, t_dec


def _prefill_time(e: _Engine, isl: int, batch: float, osl: int) -> float:
    """TTFT of one request that finds no other prompt ahead of it, stage after stage."""
    t, _, _ = _prefill_steps(e, isl, batch, osl)
    return t * e.pp + float(e.c["request_overhead_ms"]) * 1e-3


def _queued_prefill(
    e: _Engine, isl: int, batch: float, osl: int, rate_per_s: float
) -> tuple[float, PrefillWait]:
    """(TTFT of a served request without queueing, the wait for prefills ahead) with
    ``rate_per_s`` other requests arriving at the replica; with attention data parallel each
    rank takes its share. The front end's own time counts here, not in ``batch1_ttft_ms``
    (engine-level measurements) nor in throughput."""
    _, marginal, t_dec = _prefill_steps(e, isl, batch, osl)
    wait = prefill_wait(rate_per_s / e.ranks, marginal, t_dec)
    front_end = float(e.c.get("serving_overhead_ms", 0.0)) * 1e-3  # a served request's own
    # The PyTorch backend's overlap scheduler launches step n+1 before it reads step n's
    # outputs back, so a first token reaches the client one (decode) step after its prefill.
    front_end += float(e.c.get("overlap_scheduler_steps", 0.0)) * t_dec * e.pp
    return _prefill_time(e, isl, batch, osl) + front_end, wait


def _closed_loop(
    e: _Engine, isl: int, osl: int, batch: int, per_gpu: float, tpot: float
) -> tuple[float, float, PrefillWait]:
    """Closed loop of ``batch`` requests in flight: (TTFT, latency, the prefill wait).

    By the arrival theorem a request sees the other ``batch - 1`` cycling; they arrive at
    ``(batch - 1) / latency``, and latency includes the wait, so solve ``L = base + W(rate(L))``
    (``W`` grows as ``L`` shrinks: one root, found by bisection).
    """
    base_ttft, wait0 = _queued_prefill(e, isl, per_gpu, osl, 0.0)
    base = base_ttft + (osl - 1) * tpot
    if batch <= 1:
        return base_ttft + wait0.mean_s, base + wait0.mean_s, wait0
    _, marginal, t_dec = _prefill_steps(e, isl, per_gpu, osl)

    def wait_at(latency: float) -> PrefillWait:
        return prefill_wait((batch - 1) / latency / e.ranks, marginal, t_dec)

    lo, hi = base, base + (batch - 1) * marginal * 2.0 + t_dec
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if base + wait_at(mid).mean_s > mid else (lo, mid)
    wait = wait_at(hi)
    return base_ttft + wait.mean_s, base + wait.mean_s, wait


def batch1_ttft_ms(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    isl: int,
    backend: str = DEFAULT_BACKEND,
) -> float:
    """First-token latency of a lone request (static batch 1), as TRT-LLM's older tables report."""
    e = _engine(arch, gpu, check_precision(precision), tp, check_backend(backend))
    return _prefill_time(e, isl, 1.0, 1) * 1e3


@dataclass(frozen=True)
class Estimate:
    """Predicted behaviour of one TP group (one replica) under a load."""

    model: str
    gpu: str
    precision: str
    tp: int
    pp: int
    ep: int
    backend: str
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
    # Tails from the prefill queue (queueing.prefill_wait) and the p95 batch; open loop only:
    # the arrival rate and the mean requests in flight it settles at (Little's law).
    ttft_p95_ms: float = math.inf
    latency_p95_ms: float = math.inf
    rate_per_s: float | None = None
    in_flight: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["memory"] = self.memory.to_dict()
        return d


def _bound(e: _Engine, batch: float, isl: int, osl: int) -> str:
    """Which resource dominates one GPU's steady step (``batch`` = that GPU's sequences)."""
    arrivals = batch / osl
    tokens = batch + arrivals * isl
    flops = e.flops_per_token * tokens + arrivals * e.attn_flops_coeff * isl * isl
    t_c = flops / (e.peak * e.mfu) + _expert_gemm_time(e, tokens)
    read = e.dense_bytes + e.expert_bytes * _expert_fraction(e.arch, tokens * e.ranks)
    kv = batch * e.arch.kv_context(isl + osl / 2.0) * e.kv_tok / e.kv_eff
    t_m = (read + kv) / (e.bw * e.mbu)
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
    *,
    pp: int = 1,
    ep: int = 1,
    backend: str = DEFAULT_BACKEND,
) -> Estimate:
    """Predict one replica's (``tp`` x ``pp`` GPUs) throughput and latencies.

    Without ``concurrency``: the saturated maximum throughput, what ``trtllm-bench`` measures
    (as many sequences in flight as the KV cache and engine caps allow). With it: a closed loop
    of ``concurrency`` users each sending the next request when the last answer ends; beyond
    the batch the engine holds, requests queue and the queueing shows up in TTFT and latency.
    """
    precision = check_precision(precision)
    backend = check_backend(backend)
    fit = check_fit(
        arch, gpu, precision, tp, isl, osl, kv_fraction=kv_fraction, pp=pp, ep=ep, backend=backend
    )
    common: dict[str, Any] = {
        "model": arch.name,
        "gpu": gpu.name,
        "precision": precision,
        "tp": tp,
        "pp": pp,
        "ep": ep,
        "backend": backend,
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
    e = _engine(arch, gpu, precision, tp, backend, pp, ep)
    cap = _batch_cap(e, fit, isl, osl)
    batch = cap if concurrency is None else max(1, min(concurrency, cap))
    per_gpu = batch / (e.ranks * pp)
    tpot = _steady_step(e, per_gpu, isl, osl) * pp
    if concurrency is None:  # saturated: every slot refilled at once, no prefill queue modelled
        ttft = _prefill_time(e, isl, max(per_gpu, 1.0), osl)
        wait = prefill_wait(0.0, 0.0, 0.0)
        latency = ttft + (osl - 1) * tpot
    else:
        ttft, latency, wait = _closed_loop(e, isl, osl, batch, max(per_gpu, 1.0), tpot)
    ttft_p95 = ttft - wait.mean_s + wait.p95_s
    if concurrency is not None and concurrency > cap:
        # Closed loop, Little's law: N users share `cap` slots, each request waits its turn.
        queued = latency * (concurrency / cap - 1.0)
        latency += queued
        ttft += queued
        ttft_p95 += queued
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
        bound=_bound(e, per_gpu, isl, osl),
        ttft_p95_ms=ttft_p95 * 1e3,
        latency_p95_ms=(ttft_p95 + latency - ttft) * 1e3,
        in_flight=float(min(users, cap)),
    )


def _batch_cap(e: _Engine, fit: FitResult, isl: int, osl: int) -> int:
    """Sequences one replica holds at once: the KV cache, trtllm-bench's batch and token caps
    (each per GPU that schedules its own batch; the pipeline keeps ``pp`` in flight)."""
    slots = e.ranks * e.pp
    token_cap = int(MAX_NUM_TOKENS_CAP / (1.0 + isl / osl)) * slots
    kv_cap = sequences_in_kv(fit.kv_cache_tokens, isl, osl, e.arch, ranks=e.ranks)
    return max(1, min(kv_cap, MAX_BATCH_SIZE * slots, token_cap))
