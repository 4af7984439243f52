"""The planner's open-loop search: the highest arrival rate one replica serves within the SLOs.

A blueprint whose load is a rate (requests per day, peak requests per second, people with a
think time) is sized on ``openloop.estimate_rate``'s p95 TTFT and latency, which come from the
prefill queue and the batch the rate settles at, rather than on a closed loop scaled by stated
p95 factors. Kept out of ``planner`` so that module stays a readable size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmctl.sizing.architecture import Architecture
from llmctl.sizing.catalogue import Gpu
from llmctl.sizing.openloop import estimate_rate
from llmctl.sizing.performance import Estimate, estimate

# Relative precision of the highest rate found (bisection on a log scale).
RATE_TOLERANCE = 0.02


@dataclass(frozen=True)
class RateLayout:
    """One GPU x precision x layout under an open-loop load (the SLO budgets are the LLM's)."""

    arch: Architecture
    gpu: Gpu
    precision: str
    tp: int
    ep: int
    isl: int
    osl: int
    kv_fraction: float | None
    backend: str
    ttft_budget_ms: float
    latency_budget_ms: float

    def at(self, rate_per_s: float) -> Estimate:
        return estimate_rate(
            self.arch, self.gpu, self.precision, self.tp, self.isl, self.osl, rate_per_s,
            self.kv_fraction, ep=self.ep, backend=self.backend,
        )  # fmt: skip

    def meets(self, est: Estimate) -> bool:
        return (
            est.fits
            and est.reason is None
            and est.ttft_p95_ms <= self.ttft_budget_ms
            and est.latency_p95_ms <= self.latency_budget_ms
        )

    def saturated_rate(self) -> float:
        """Requests per second the replica completes flat out: no open loop goes beyond it."""
        sat = estimate(
            self.arch, self.gpu, self.precision, self.tp, self.isl, self.osl, None,
            self.kv_fraction, ep=self.ep, backend=self.backend,
        )  # fmt: skip
        return sat.requests_per_s

    def max_rate(self) -> float:
        """Highest arrival rate meeting both SLOs at p95 (0.0: not even a trickle does)."""
        hi = self.saturated_rate()
        lo = hi * 1e-3
        if hi <= 0 or not self.meets(self.at(lo)):
            return 0.0
        if self.meets(self.at(hi * 0.999)):
            return hi * 0.999
        while hi / lo > 1.0 + RATE_TOLERANCE:
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if self.meets(self.at(mid)) else (lo, mid)
        return lo
