"""The capacity planner: the cheapest GPU x precision x TP (x EP) x replicas meeting every SLO.

The LLM only gets what retrieval leaves of the SLO. A load stated as requests in flight is a
closed loop: predictions are means, scaled to p95 with stated factors before they are compared
with p95 targets, for the peak plus the requested headroom spread evenly over the replicas. A load
stated as a rate (or people with a think time) is an open loop: each configuration's highest
Poisson rate within the SLOs comes from the open-loop model's own p95s (``planner_rate``). Every
configuration that loses says why, so the choice can be argued with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from llmctl.errors import SizingError
from llmctl.sizing.architecture import Architecture, load_architecture
from llmctl.sizing.catalogue import Gpu, get_gpu, list_gpus
from llmctl.sizing.constants import DEFAULT_BACKEND, check_backend, perf_constants
from llmctl.sizing.load import poisson_quantile, think_rate
from llmctl.sizing.memory import check_fit, check_precision
from llmctl.sizing.performance import Estimate, estimate
from llmctl.sizing.planner_rate import RateLayout

HOURS_PER_MONTH = 730
TP_CHOICES = (1, 2, 4, 8)
# "auto" precision weighs the near-lossless formats only; int4/int8 weight-only trade answer
# quality for memory, a decision for a person (name them in model.precision or --precision).
AUTO_PRECISIONS = ("bf16", "fp8")


@dataclass(frozen=True)
class SizingRequest:
    """What the service must sustain (from a blueprint or the command line)."""

    model: str
    isl: int
    osl: int
    peak_concurrency: int
    ttft_p95_ms: float
    latency_p95_ms: float
    retrieval_budget_ms: float = 0.0
    precisions: tuple[str, ...] | None = None
    gpus: tuple[str, ...] | None = None
    tp: int | None = None
    replicas_min: int = 1
    replicas_max: int = 64
    monthly_budget_usd: float | None = None
    headroom: float = 0.2
    gpu_prices: dict[str, float] = field(default_factory=dict)
    kv_fraction: float | None = None
    growth_factor: float = 1.0
    backend: str = DEFAULT_BACKEND
    load_basis: str = ""  # how peak_concurrency was reached (sizing.load), for the assumptions
    # Open loop (sizing.load.Load.is_rate): an arrival rate at the peak, or people online with
    # a think time; peak_concurrency is then only the estimate over the latency SLO.
    peak_rate_per_s: float | None = None
    think_users: int | None = None
    think_time_s: float = 0.0

    @property
    def is_rate(self) -> bool:
        return self.peak_rate_per_s is not None or self.think_users is not None

    def design_rate(self, latency_s: float = 0.0) -> float:
        """Arrivals per second to size for: the peak plus the headroom; people with a think time
        arrive at N / (Z + latency), so at most N / Z (``latency_s`` = 0)."""
        if self.peak_rate_per_s is not None:
            base = self.peak_rate_per_s
        else:
            base = think_rate(self.think_users or 0, self.think_time_s, latency_s)
        return base * (1.0 + self.headroom)

    @property
    def design_concurrency(self) -> int:
        """Concurrent requests to size for: the peak plus the headroom fraction."""
        return max(1, math.ceil(self.peak_concurrency * (1.0 + self.headroom) - 1e-9))

    @property
    def growth_concurrency(self) -> int:
        """Concurrent requests the autoscaling ceiling (replicas_max) must reach."""
        return max(1, math.ceil(self.design_concurrency * self.growth_factor - 1e-9))

    @property
    def llm_ttft_budget_ms(self) -> float:
        return self.ttft_p95_ms - self.retrieval_budget_ms

    @property
    def llm_latency_budget_ms(self) -> float:
        return self.latency_p95_ms - self.retrieval_budget_ms


@dataclass(frozen=True)
class Candidate:
    """One configuration that meets every SLO."""

    gpu: str
    precision: str
    tp: int
    replicas: int
    gpus_total: int
    max_batch_size: int
    kv_cache_tokens: int
    concurrency_per_replica: int
    capacity_concurrency: int
    ttft_ms: float
    tpot_ms: float
    latency_ms: float
    ttft_p95_ms: float
    latency_p95_ms: float
    throughput_tokens_per_s: float
    hourly_cost_usd: float
    monthly_cost_usd: float
    bound: str
    replicas_at_growth: int = 0
    monthly_cost_at_growth_usd: float = 0.0
    ep: int = 1  # expert parallel (attention data parallel) over the replica's TP GPUs
    # Open loop only: arrivals per second each replica gets, and the most it takes within the
    # SLOs; concurrency_per_replica is then the mean in flight the rate settles at.
    rate_per_replica: float = 0.0
    capacity_rate_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Rejection:
    gpu: str
    precision: str
    tp: int
    category: str  # "does not fit" | "misses TTFT" | "misses latency" | "over budget"
    reason: str
    shortfall: float = math.inf  # how far off: predicted / budget (1.3 = 30% over); inf: no fit
    ep: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CapacityPlan:
    """The chosen configuration, the runners-up and the rejected, with the assumptions."""

    request: SizingRequest
    model: dict[str, Any]
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    rejected: tuple[Rejection, ...]
    assumptions: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    growth: tuple[PhasePlan, ...] = ()
    derivation: tuple[str, ...] = ()  # how the load became requests in flight, step by step

    def __getattr__(self, name: str) -> Any:
        # plan.gpu, plan.tp, plan.monthly_cost_usd ... read through to the chosen candidate.
        if name.startswith("_") or name in {"chosen", "request"}:
            raise AttributeError(name)
        return getattr(self.chosen, name)

    def to_dict(self) -> dict[str, Any]:
        req = asdict(self.request)
        req["design_concurrency"] = self.request.design_concurrency
        req["llm_ttft_budget_ms"] = self.request.llm_ttft_budget_ms
        req["llm_latency_budget_ms"] = self.request.llm_latency_budget_ms
        return {
            "request": req,
            "model": self.model,
            "chosen": self.chosen.to_dict(),
            **self.chosen.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "rejected": [r.to_dict() for r in self.rejected],
            "assumptions": list(self.assumptions),
            "warnings": list(self.warnings),
            "growth": [g.to_dict() for g in self.growth],
            "derivation": list(self.derivation),
        }


@dataclass(frozen=True)
class PhasePlan:
    """One phase of the scaling plan: its load, the cheapest configuration meeting the SLOs at
    that load (or why none does), and how its cost compares with the phase's budget."""

    name: str
    after: str | None
    in_flight: int
    load_basis: str
    monthly_budget_usd: float | None
    chosen: Candidate | None
    error: str | None = None

    @property
    def within_budget(self) -> bool | None:
        if self.chosen is None or self.monthly_budget_usd is None:
            return None
        return self.chosen.monthly_cost_usd <= self.monthly_budget_usd

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["within_budget"] = self.within_budget
        return d


def _p95(name: str) -> float:
    return float(perf_constants()["p95_over_mean"][name])


def _meets(est: Estimate, req: SizingRequest) -> bool:
    return (
        est.fits
        and est.ttft_ms * _p95("ttft") <= req.llm_ttft_budget_ms
        and est.latency_ms * _p95("latency") <= req.llm_latency_budget_ms
    )


def _largest_meeting(
    arch: Architecture, gpu: Gpu, prec: str, tp: int, req: SizingRequest, ep: int = 1
) -> int:
    """Most concurrent requests one replica serves within the SLOs (0 if not even one)."""

    def ok(c: int) -> bool:
        est = estimate(
            arch,
            gpu,
            prec,
            tp,
            req.isl,
            req.osl,
            c,
            kv_fraction=req.kv_fraction,
            ep=ep,
            backend=req.backend,
        )
        return _meets(est, req)

    if not ok(1):
        return 0
    lo, hi = 1, 2
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi > 1 << 16:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _assumptions(req: SizingRequest) -> tuple[str, ...]:
    c = perf_constants()
    p95 = c["p95_over_mean"]
    frac = req.kv_fraction if req.kv_fraction is not None else c["kv_fraction"]
    basis = f" ({req.load_basis})" if req.load_basis else ""
    load = (
        f"load: an open loop (Poisson arrivals{basis}) + {req.headroom:.0%} headroom, spread "
        "evenly over the replicas; TTFT and latency p95 from the prefill queue and the p95 "
        "batch (sizing.openloop), not from the factors below"
        if req.is_rate
        else f"load: {req.design_concurrency} requests in flight = peak {req.peak_concurrency}"
        f"{basis} + {req.headroom:.0%} headroom, spread evenly over the replicas; closed loop "
        "(each request slot is refilled as soon as its answer ends)"
    )
    return (
        load,
        f"cost and budget at today's peak; {req.growth_factor:g}x growth "
        + (
            f"({req.growth_factor * req.design_rate():.3g} requests/s at most)"
            if req.is_rate
            else f"({req.growth_concurrency} concurrent)"
        )
        + f" is met by autoscaling up to replicas.max = {req.replicas_max}",
        f"every request has {req.isl} input and {req.osl} output tokens (the blueprint's maxima)",
        f"retrieval takes {req.retrieval_budget_ms:g} ms of each SLO: the LLM gets TTFT p95 "
        f"<= {req.llm_ttft_budget_ms:g} ms and latency p95 <= {req.llm_latency_budget_ms:g} ms",
        f"p95 = predicted mean x {p95['ttft']} (TTFT) and x {p95['latency']} (latency)"
        + (" for closed-loop loads" if req.is_rate else ""),
        f"TensorRT-LLM {req.backend} backend, in-flight batching, paged KV cache at {frac:.0%} "
        "of free GPU memory; fp8 and fp4 use an FP8 KV cache, others 16-bit",
        "tensor parallelism within one node (NVLink or PCIe as the catalogue says); replicas "
        "are independent",
        "prices are indicative on-demand USD per GPU-hour (override with capacity.gpuPrices); "
        f"a month is {HOURS_PER_MONTH} hours",
        "performance constants fitted to NVIDIA's published TensorRT-LLM throughput tables "
        "(0.17 engines; 0.19-1.2 PyTorch backend on H100, H200, B200, GB200, RTX PRO 6000); "
        "Ampere, Ada and PCIe Hopper have no published rows and use the same efficiencies on "
        "their datasheet figures (see benchmarks/size_accuracy.py for the measured errors)",
    )


def search(req: SizingRequest, arch: Architecture | None = None) -> CapacityPlan | None:
    """Evaluate every configuration; None when nothing meets the SLOs (see ``plan``)."""
    plan_, _ = _search(req, arch)
    return plan_


def _search(
    req: SizingRequest, arch: Architecture | None
) -> tuple[CapacityPlan | None, list[Rejection]]:
    arch = arch or load_architecture(req.model)
    gpus = [get_gpu(g, req.gpu_prices) for g in req.gpus] if req.gpus else list_gpus(req.gpu_prices)
    precisions = (
        tuple(check_precision(p) for p in req.precisions) if req.precisions else AUTO_PRECISIONS
    )
    tps = (req.tp,) if req.tp else TP_CHOICES
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    for gpu in gpus:
        for prec in precisions:
            if prec not in gpu.precisions:
                continue  # listed once below, not once per TP
            for tp in tps:
                if tp > gpu.max_tp:
                    continue
                # MoE models also try TensorRT-LLM's DEP layout: attention data parallel,
                # experts split over the same GPUs.
                for ep in (1, tp) if arch.is_moe and tp > 1 else (1,):
                    outcome = _evaluate(arch, gpu, prec, tp, ep, req)
                    if isinstance(outcome, Candidate):
                        candidates.append(outcome)
                    else:
                        rejected.append(outcome)
        unsupported = [p for p in precisions if p not in gpu.precisions]
        for prec in unsupported:
            rejected.append(
                Rejection(gpu.name, prec, 0, "does not fit", f"{gpu.name} does not support {prec}")
            )
    # Configurations that can also scale to the planned growth within replicas_max come first.
    candidates.sort(
        key=lambda c: (
            c.replicas_at_growth > req.replicas_max,
            c.monthly_cost_usd,
            c.latency_p95_ms,
            c.gpus_total,
        )
    )
    if not candidates:
        return None, rejected
    plan_ = CapacityPlan(
        request=req,
        model=arch.to_dict(),
        chosen=candidates[0],
        candidates=tuple(candidates),
        rejected=tuple(rejected),
        assumptions=_assumptions(req),
        warnings=_warnings(req, candidates[0]),
        derivation=_derivation(req, candidates[0]),
    )
    return plan_, rejected


def _layout(tp: int, ep: int) -> str:
    return f"TP{tp}" + (f" EP{ep}" if ep > 1 else "")


def _evaluate(
    arch: Architecture, gpu: Gpu, prec: str, tp: int, ep: int, req: SizingRequest
) -> Candidate | Rejection:
    """One GPU x precision x layout: the cheapest replica count meeting the SLOs, or why not."""

    def est_at(conc: int) -> Estimate:
        return estimate(
            arch, gpu, prec, tp, req.isl, req.osl, conc, req.kv_fraction, ep=ep,
            backend=req.backend,
        )  # fmt: skip

    need = req.design_concurrency
    fit = check_fit(
        arch, gpu, prec, tp, req.isl, req.osl, req.kv_fraction, ep=ep, backend=req.backend
    )
    if not fit.fits:
        return Rejection(gpu.name, prec, tp, "does not fit", fit.reason or "", ep=ep)
    if req.is_rate:
        return _evaluate_rate(arch, gpu, prec, tp, ep, req, fit.max_concurrency)
    per_replica = _largest_meeting(arch, gpu, prec, tp, req, ep)
    if per_replica == 0:
        return _slo_rejection(gpu, prec, tp, est_at(1), req, "even one request", ep)
    replicas = max(max(1, req.replicas_min), math.ceil(need / per_replica))
    grown = max(replicas, math.ceil(req.growth_concurrency / per_replica))
    if replicas > req.replicas_max:
        est = est_at(math.ceil(need / req.replicas_max))
        return _slo_rejection(gpu, prec, tp, est, req, f"{req.replicas_max} replicas", ep)
    conc = math.ceil(need / replicas)
    est = est_at(conc)
    hourly = gpu.price_per_hour * tp * replicas
    cand = Candidate(
        gpu=gpu.name,
        precision=prec,
        tp=tp,
        replicas=replicas,
        gpus_total=tp * replicas,
        max_batch_size=min(fit.max_concurrency, max(8, 8 * math.ceil(conc / 8))),
        kv_cache_tokens=fit.kv_cache_tokens,
        concurrency_per_replica=conc,
        capacity_concurrency=per_replica * replicas,
        ttft_ms=round(est.ttft_ms, 2),
        tpot_ms=round(est.tpot_ms, 3),
        latency_ms=round(est.latency_ms, 1),
        ttft_p95_ms=round(est.ttft_ms * _p95("ttft"), 2),
        latency_p95_ms=round(est.latency_ms * _p95("latency"), 1),
        throughput_tokens_per_s=round(est.throughput_tokens_per_s * replicas, 1),
        hourly_cost_usd=round(hourly, 2),
        monthly_cost_usd=round(hourly * HOURS_PER_MONTH, 2),
        bound=est.bound,
        replicas_at_growth=grown,
        monthly_cost_at_growth_usd=round(gpu.price_per_hour * tp * grown * HOURS_PER_MONTH, 2),
        ep=ep,
    )
    if req.monthly_budget_usd is not None and cand.monthly_cost_usd > req.monthly_budget_usd:
        return Rejection(
            gpu.name,
            prec,
            tp,
            "over budget",
            f"{replicas} x {_layout(tp, ep)} = {cand.gpus_total} GPUs cost "
            f"${cand.monthly_cost_usd:,.0f}/month > budget ${req.monthly_budget_usd:,.0f}",
            cand.monthly_cost_usd / req.monthly_budget_usd,
            ep=ep,
        )
    return cand


def _evaluate_rate(
    arch: Architecture, gpu: Gpu, prec: str, tp: int, ep: int, req: SizingRequest, kv_seqs: int
) -> Candidate | Rejection:
    """Open loop: replicas = design rate / the highest rate one replica serves within the SLOs
    at p95. People with a think time arrive at N / (Z + latency): start from the bound N / Z,
    then use the predicted latency (two rounds; latency changes little with the rate split)."""
    layout = RateLayout(arch, gpu, prec, tp, ep, req.isl, req.osl, req.kv_fraction, req.backend,
                        req.llm_ttft_budget_ms, req.llm_latency_budget_ms)  # fmt: skip
    per_replica = layout.max_rate()
    if per_replica <= 0:
        return _slo_rejection(gpu, prec, tp, layout.at(1e-3), req, "a trickle of requests", ep)
    need, latency_s = req.design_rate(0.0), 0.0
    for _ in range(2 if req.think_users else 1):
        need = req.design_rate(latency_s)
        replicas = max(max(1, req.replicas_min), math.ceil(need / per_replica - 1e-9))
        est = layout.at(need / replicas)
        latency_s = est.latency_ms / 1e3
    grown = max(replicas, math.ceil(need * req.growth_factor / per_replica - 1e-9))
    if replicas > req.replicas_max:
        est = layout.at(need / req.replicas_max)
        return _slo_rejection(gpu, prec, tp, est, req, f"{req.replicas_max} replicas", ep)
    hourly = gpu.price_per_hour * tp * replicas
    peak_batch = poisson_quantile(est.in_flight, 0.999)
    cand = Candidate(
        gpu=gpu.name, precision=prec, tp=tp, replicas=replicas, gpus_total=tp * replicas,
        max_batch_size=min(kv_seqs, max(8, 8 * math.ceil(peak_batch / 8))),
        kv_cache_tokens=est.kv_cache_tokens,
        concurrency_per_replica=max(1, math.ceil(est.in_flight)),
        capacity_concurrency=math.floor(per_replica * replicas * latency_s),
        ttft_ms=round(est.ttft_ms, 2), tpot_ms=round(est.tpot_ms, 3),
        latency_ms=round(est.latency_ms, 1), ttft_p95_ms=round(est.ttft_p95_ms, 2),
        latency_p95_ms=round(est.latency_p95_ms, 1),
        throughput_tokens_per_s=round(est.throughput_tokens_per_s * replicas, 1),
        hourly_cost_usd=round(hourly, 2), monthly_cost_usd=round(hourly * HOURS_PER_MONTH, 2),
        bound=est.bound, replicas_at_growth=grown,
        monthly_cost_at_growth_usd=round(gpu.price_per_hour * tp * grown * HOURS_PER_MONTH, 2),
        ep=ep, rate_per_replica=round(need / replicas, 4),
        capacity_rate_per_s=round(per_replica * replicas, 4),
    )  # fmt: skip
    if req.monthly_budget_usd is not None and cand.monthly_cost_usd > req.monthly_budget_usd:
        return Rejection(
            gpu.name, prec, tp, "over budget",
            f"{replicas} x {_layout(tp, ep)} = {cand.gpus_total} GPUs cost "
            f"${cand.monthly_cost_usd:,.0f}/month > budget ${req.monthly_budget_usd:,.0f}",
            cand.monthly_cost_usd / req.monthly_budget_usd, ep=ep,
        )  # fmt: skip
    return cand


def _derivation(req: SizingRequest, c: Candidate) -> tuple[str, ...]:
    """The load, from what the blueprint states to requests in flight on the chosen replicas."""
    lines = [f"stated: {req.load_basis or 'requests in flight from the command line'}"]
    if not req.is_rate:
        lines.append(
            f"sized for {req.design_concurrency} requests in flight = peak "
            f"{req.peak_concurrency} + {req.headroom:.0%} headroom (closed loop), "
            f"{c.concurrency_per_replica} on each of {c.replicas} replicas"
        )
        return tuple(lines)
    latency_s = c.latency_ms / 1e3
    rate = req.design_rate(latency_s)
    if req.think_users:
        lines.append(
            f"arrivals: {req.think_users:,} people / ({req.think_time_s:g} s think time + "
            f"{latency_s:.2f} s predicted latency) = {rate / (1 + req.headroom):.3g}/s"
        )
    lines.append(
        f"design rate {rate:.3g}/s = peak + {req.headroom:.0%} headroom; {c.replicas} replicas "
        f"take {c.rate_per_replica:.3g}/s each (at most {c.capacity_rate_per_s / c.replicas:.3g}/s "
        "within the SLOs, Poisson arrivals)"
    )
    mean = c.rate_per_replica * latency_s
    lines.append(
        f"requests in flight (Little's law): {c.rate_per_replica:.3g}/s x {latency_s:.2f} s "
        f"predicted mean latency = {mean:.3g} per replica on average, "
        f"{poisson_quantile(mean)} at the 99th percentile; {mean * c.replicas:.3g} in all"
    )
    lines.append(
        f"growth {req.growth_factor:g}x = {rate * req.growth_factor:.3g}/s: "
        f"{c.replicas_at_growth} replicas (${c.monthly_cost_at_growth_usd:,.0f}/month)"
    )
    return tuple(lines)


def _warnings(req: SizingRequest, chosen: Candidate) -> tuple[str, ...]:
    if chosen.replicas_at_growth <= req.replicas_max:
        return ()
    return (
        f"{req.growth_factor:g}x growth ({req.growth_concurrency} concurrent requests) needs "
        f"{chosen.replicas_at_growth} replicas of {chosen.tp} x {chosen.gpu} "
        f"(${chosen.monthly_cost_at_growth_usd:,.0f}/month); no configuration reaches it within "
        f"replicas.max = {req.replicas_max}: raise it or revisit the growth plan",
    )


def _slo_rejection(
    gpu: Gpu, prec: str, tp: int, est: Estimate, req: SizingRequest, scope: str, ep: int = 1
) -> Rejection:
    ttft95 = est.ttft_ms * _p95("ttft")
    lat95 = est.latency_ms * _p95("latency")
    over_ttft = ttft95 / req.llm_ttft_budget_ms
    over_latency = lat95 / req.llm_latency_budget_ms
    if over_ttft > 1:
        return Rejection(
            gpu.name,
            prec,
            tp,
            "misses TTFT",
            f"TTFT p95 {ttft95:,.0f} ms > {req.llm_ttft_budget_ms:,.0f} ms budget with {scope}",
            max(over_ttft, over_latency),
            ep=ep,
        )
    return Rejection(
        gpu.name,
        prec,
        tp,
        "misses latency",
        f"latency p95 {lat95:,.0f} ms > {req.llm_latency_budget_ms:,.0f} ms budget with {scope}",
        over_latency,
        ep=ep,
    )


def _load_words(req: SizingRequest) -> str:
    if req.is_rate:
        return f"{req.design_rate():.3g} requests/s (Poisson arrivals)"
    return f"{req.design_concurrency} concurrent requests"


def plan(request: SizingRequest) -> CapacityPlan:
    """Choose the cheapest configuration meeting every SLO, or explain why none does."""
    if request.isl < 1 or request.osl < 1:
        raise SizingError("input and output lengths must be at least one token")
    check_backend(request.backend)
    if request.llm_ttft_budget_ms <= 0 or request.llm_latency_budget_ms <= 0:
        raise SizingError(
            f"retrieval's {request.retrieval_budget_ms:g} ms budget leaves nothing of the SLO "
            f"(TTFT p95 {request.ttft_p95_ms:g} ms, latency p95 {request.latency_p95_ms:g} ms) "
            "for the LLM: raise the SLO or lower retrieval.latencyBudgetMs"
        )
    result, rejected = _search(request, None)
    if result is not None:
        return result
    counts: dict[str, int] = {}
    for r in rejected:
        counts[r.category] = counts.get(r.category, 0) + 1
    summary = ", ".join(f"{n} {cat}" for cat, n in sorted(counts.items()))
    over_budget = [r for r in rejected if r.category == "over budget"]
    if over_budget:  # the SLOs can be met, at a price: say which and how much
        cheapest = min(over_budget, key=lambda r: r.shortfall)
        detail = (
            f"; the cheapest configuration meeting the SLOs is {cheapest.gpu} "
            f"{cheapest.precision}: {cheapest.reason}"
        )
    else:
        closest = min(rejected, key=lambda r: r.shortfall, default=None)
        detail = (
            f"; closest: {closest.gpu} {closest.precision} TP{closest.tp}: {closest.reason}"
            if closest
            else ""
        )
    raise SizingError(
        f"no configuration of {request.model} meets the SLOs for {_load_words(request)} of "
        f"{request.isl}+{request.osl} tokens (LLM budget after "
        f"{request.retrieval_budget_ms:g} ms retrieval: TTFT p95 <= "
        f"{request.llm_ttft_budget_ms:g} ms, latency p95 <= {request.llm_latency_budget_ms:g} ms, "
        f"replicas <= {request.replicas_max}"
        + (
            f", budget ${request.monthly_budget_usd:,.0f}/month"
            if request.monthly_budget_usd
            else ""
        )
        + f"): {summary}{detail}"
    )
