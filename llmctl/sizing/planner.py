"""The capacity planner: the cheapest GPU x precision x TP x replicas that meets every SLO.

The LLM only gets what retrieval leaves of the SLO; predictions are means, so they are scaled
to p95 with stated factors before they are compared with p95 targets; the load is the peak
concurrency plus the requested headroom, spread evenly over the replicas. Every configuration
that loses says why, so the choice can be argued with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from llmctl.errors import SizingError
from llmctl.sizing.architecture import Architecture, load_architecture
from llmctl.sizing.catalogue import Gpu, get_gpu, list_gpus
from llmctl.sizing.constants import perf_constants
from llmctl.sizing.memory import check_fit, check_precision
from llmctl.sizing.performance import Estimate, estimate

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
        }


def _p95(name: str) -> float:
    return float(perf_constants()["p95_over_mean"][name])


def _meets(est: Estimate, req: SizingRequest) -> bool:
    return (
        est.fits
        and est.ttft_ms * _p95("ttft") <= req.llm_ttft_budget_ms
        and est.latency_ms * _p95("latency") <= req.llm_latency_budget_ms
    )


def _largest_meeting(arch: Architecture, gpu: Gpu, prec: str, tp: int, req: SizingRequest) -> int:
    """Most concurrent requests one replica serves within the SLOs (0 if not even one)."""

    def ok(c: int) -> bool:
        est = estimate(arch, gpu, prec, tp, req.isl, req.osl, c, kv_fraction=req.kv_fraction)
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
    return (
        f"load: {req.design_concurrency} concurrent requests = peak {req.peak_concurrency} "
        f"+ {req.headroom:.0%} headroom, spread evenly over the replicas; closed loop (each "
        "user waits for an answer before the next request)",
        f"cost and budget at today's peak; {req.growth_factor:g}x growth "
        f"({req.growth_concurrency} concurrent) is met by autoscaling up to replicas.max = "
        f"{req.replicas_max}",
        f"every request has {req.isl} input and {req.osl} output tokens (the blueprint's maxima)",
        f"retrieval takes {req.retrieval_budget_ms:g} ms of each SLO: the LLM gets TTFT p95 "
        f"<= {req.llm_ttft_budget_ms:g} ms and latency p95 <= {req.llm_latency_budget_ms:g} ms",
        f"p95 = predicted mean x {p95['ttft']} (TTFT) and x {p95['latency']} (latency)",
        f"TensorRT-LLM in-flight batching, paged KV cache at {frac:.0%} of free GPU memory; "
        "fp8 engines use an FP8 KV cache, others 16-bit",
        "tensor parallelism within one node (NVLink or PCIe as the catalogue says); replicas "
        "are independent",
        "prices are indicative on-demand USD per GPU-hour (override with capacity.gpuPrices); "
        f"a month is {HOURS_PER_MONTH} hours",
        "performance constants fitted to NVIDIA's published TensorRT-LLM 0.17 H100/H200 FP8 "
        "measurements; other GPUs and precisions use the same efficiencies on their datasheet "
        "figures (expect ~10-15% median error there, more for PCIe TP and MoE)",
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
    need = req.design_concurrency
    rmin = max(1, req.replicas_min)
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    for gpu in gpus:
        for prec in precisions:
            if prec not in gpu.precisions:
                continue  # listed once below, not once per TP
            for tp in tps:
                if tp > gpu.max_tp:
                    continue
                fit = check_fit(arch, gpu, prec, tp, req.isl, req.osl, req.kv_fraction)
                if not fit.fits:
                    rejected.append(Rejection(gpu.name, prec, tp, "does not fit", fit.reason or ""))
                    continue
                per_replica = _largest_meeting(arch, gpu, prec, tp, req)
                if per_replica == 0:
                    one = estimate(arch, gpu, prec, tp, req.isl, req.osl, 1, req.kv_fraction)
                    rejected.append(_slo_rejection(gpu, prec, tp, one, req, "even one request"))
                    continue
                replicas = max(rmin, math.ceil(need / per_replica))
                grown = max(replicas, math.ceil(req.growth_concurrency / per_replica))
                if replicas > req.replicas_max:
                    conc = math.ceil(need / req.replicas_max)
                    est = estimate(arch, gpu, prec, tp, req.isl, req.osl, conc, req.kv_fraction)
                    rejected.append(
                        _slo_rejection(gpu, prec, tp, est, req, f"{req.replicas_max} replicas")
                    )
                    continue
                conc = math.ceil(need / replicas)
                est = estimate(arch, gpu, prec, tp, req.isl, req.osl, conc, req.kv_fraction)
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
                    monthly_cost_at_growth_usd=round(
                        gpu.price_per_hour * tp * grown * HOURS_PER_MONTH, 2
                    ),
                )
                if (
                    req.monthly_budget_usd is not None
                    and cand.monthly_cost_usd > req.monthly_budget_usd
                ):
                    rejected.append(
                        Rejection(
                            gpu.name,
                            prec,
                            tp,
                            "over budget",
                            f"{replicas} x TP{tp} = {cand.gpus_total} GPUs cost "
                            f"${cand.monthly_cost_usd:,.0f}/month > budget "
                            f"${req.monthly_budget_usd:,.0f}",
                            cand.monthly_cost_usd / req.monthly_budget_usd,
                        )
                    )
                    continue
                candidates.append(cand)
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
    )
    return plan_, rejected


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
    gpu: Gpu, prec: str, tp: int, est: Estimate, req: SizingRequest, scope: str
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
        )
    return Rejection(
        gpu.name,
        prec,
        tp,
        "misses latency",
        f"latency p95 {lat95:,.0f} ms > {req.llm_latency_budget_ms:,.0f} ms budget with {scope}",
        over_latency,
    )


def plan(request: SizingRequest) -> CapacityPlan:
    """Choose the cheapest configuration meeting every SLO, or explain why none does."""
    if request.isl < 1 or request.osl < 1:
        raise SizingError("input and output lengths must be at least one token")
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
        f"no configuration of {request.model} meets the SLOs for {request.design_concurrency} "
        f"concurrent requests of {request.isl}+{request.osl} tokens (LLM budget after "
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
