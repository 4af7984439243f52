"""Open loop: requests arrive as a Poisson stream at a given rate (``llmctl size --rps``).

Production traffic does not wait for the previous answer, so the number of requests in flight
is an outcome, not an input: by Little's law it settles at ``rate x latency``, and latency itself
grows with the batch (longer decode steps) and with the prefills queued ahead of each new request
(``queueing.prefill_wait``). Solved as a fixed point on the mean number in flight. Tails: TTFT p95
from the prefill queue's tail; the decode part of latency p95 at the batch the Poisson number in
flight exceeds only 5% of the time. A rate beyond what the replica can prefill, or needing more
sequences than its KV cache holds, has no steady state: the queue grows without bound.
"""

from __future__ import annotations

import math
from dataclasses import replace

from llmctl.sizing.architecture import Architecture
from llmctl.sizing.catalogue import Gpu
from llmctl.sizing.constants import DEFAULT_BACKEND
from llmctl.sizing.load import poisson_quantile
from llmctl.sizing.performance import (
    Estimate,
    _batch_cap,
    _bound,
    _Engine,
    _engine,
    _queued_prefill,
    _steady_step,
    estimate,
    step_time,
)
from llmctl.sizing.queueing import P95_TAIL, PrefillWait


def _decode(e: _Engine, in_flight: float, isl: int, osl: int) -> float:
    """Mean inter-token latency with ``in_flight`` sequences on the replica."""
    per_gpu = max(in_flight, 1.0) / (e.ranks * e.pp)
    return _steady_step(e, per_gpu, isl, osl) * e.pp


def _at(
    e: _Engine, isl: int, osl: int, rate: float, in_flight: float
) -> tuple[float, float, PrefillWait]:
    """(TTFT, inter-token latency, prefill wait) when ``in_flight`` requests share the replica."""
    tpot = _decode(e, in_flight, isl, osl)
    per_gpu = max(in_flight, 1.0) / (e.ranks * e.pp)
    ttft, wait = _queued_prefill(e, isl, per_gpu, osl, rate)
    return ttft + wait.mean_s, tpot, wait


def estimate_rate(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    isl: int,
    osl: int,
    rate_per_s: float,
    kv_fraction: float | None = None,
    *,
    pp: int = 1,
    ep: int = 1,
    backend: str = DEFAULT_BACKEND,
) -> Estimate:
    """Predict one replica under Poisson arrivals at ``rate_per_s`` requests per second.

    ``ttft_ms``/``tpot_ms``/``latency_ms`` are means, ``ttft_p95_ms``/``latency_p95_ms`` tails,
    ``in_flight`` the mean requests in flight; an unstable rate gives infinite latencies and a
    ``reason`` saying which limit it passes.
    """
    if rate_per_s <= 0:
        from llmctl.errors import SizingError

        raise SizingError(f"--rps must be a positive request rate, got {rate_per_s:g}")
    base = estimate(
        arch, gpu, precision, tp, isl, osl, 1, kv_fraction, pp=pp, ep=ep, backend=backend
    )
    if not base.fits:
        return replace(base, concurrency=None, rate_per_s=rate_per_s)
    e = _engine(arch, gpu, base.precision, tp, base.backend, pp, ep)
    cap = _batch_cap(e, base.memory, isl, osl)
    # Little's law fixed point: n = rate x latency(n); latency grows with n, so damped iteration
    # from the lone-request latency converges (or passes the cap: no steady state).
    n = rate_per_s * base.latency_ms / 1e3
    ttft = tpot = math.inf
    wait = PrefillWait(math.inf, math.inf, math.inf)
    for _ in range(60):
        ttft, tpot, wait = _at(e, isl, osl, rate_per_s, n)
        latency = ttft + (osl - 1) * tpot
        target = rate_per_s * latency
        if not math.isfinite(target) or target > cap:
            break
        if abs(target - n) < 1e-3 * max(n, 1.0):
            n = target
            break
        n = 0.5 * (n + target)
    latency = ttft + (osl - 1) * tpot
    if not math.isfinite(latency) or rate_per_s * latency > cap:
        sat = estimate(arch, gpu, precision, tp, isl, osl, None, kv_fraction, pp=pp, ep=ep,
                       backend=backend)  # fmt: skip
        why = (
            "the prompts alone would keep it busy more than all the time"
            if not wait.stable
            else f"needs more than the {cap} sequences the KV cache holds"
        )
        return replace(
            base,
            concurrency=None,
            rate_per_s=rate_per_s,
            reason=f"{rate_per_s:g} requests/s has no steady state on one replica ({why}; "
            f"saturated it completes {sat.requests_per_s:.3g}/s)",
            batch=cap,
            max_concurrency=cap,
            ttft_ms=math.inf,
            tpot_ms=math.inf,
            latency_ms=math.inf,
            ttft_p95_ms=math.inf,
            latency_p95_ms=math.inf,
            throughput_tokens_per_s=sat.throughput_tokens_per_s,
            requests_per_s=sat.requests_per_s,
            in_flight=math.inf,
            bound=sat.bound,
        )
    busy = min(cap, max(1, poisson_quantile(n, 1.0 - P95_TAIL)))
    tpot_p95_batch = _decode(e, busy, isl, osl)
    ttft_p95 = ttft - wait.mean_s + wait.p95_s
    return replace(
        base,
        concurrency=None,
        rate_per_s=rate_per_s,
        max_concurrency=cap,
        batch=max(1, round(n)),
        throughput_tokens_per_s=rate_per_s * osl,
        requests_per_s=rate_per_s,
        ttft_ms=ttft * 1e3,
        tpot_ms=tpot * 1e3,
        latency_ms=latency * 1e3,
        ttft_p95_ms=ttft_p95 * 1e3,
        latency_p95_ms=(ttft_p95 + (osl - 1) * tpot_p95_batch) * 1e3,
        in_flight=n,
        bound=_bound(e, max(n, 1.0) / (e.ranks * e.pp), isl, osl),
    )


def burst_ttft_ms(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    isl: int,
    osl: int,
    requests: int,
    *,
    backend: str = DEFAULT_BACKEND,
) -> float:
    """Mean TTFT when ``requests`` arrive at once (a benchmark's QPS=INF): their prompts fill
    steps of ``max_num_tokens`` first come first served, so the mean request waits for half the
    burst's prefill work. Waves beyond the KV cache's batch wait for whole answers to finish."""
    sat = estimate(arch, gpu, precision, tp, isl, osl, None, backend=backend)
    if not sat.fits:
        return math.inf
    e = _engine(arch, gpu, sat.precision, tp, sat.backend)
    chunk = int(e.c["max_num_tokens"])
    wave = min(requests, sat.batch)
    t_step = step_time(
        e, n_dec=0.0, n_pre=chunk, ctx_len=isl, prefill_attn=e.attn_flops_coeff * chunk * isl
    )
    prefill_all = math.ceil(wave * isl / e.ranks / chunk) * t_step
    waves = max(requests / max(sat.batch, 1), 1.0)
    queued = (waves - 1.0) / 2.0 * sat.latency_ms / 1e3
    own = float(e.c["request_overhead_ms"]) * 1e-3
    return (prefill_all * (wave + 1) / (2 * wave) + queued + own) * 1e3
