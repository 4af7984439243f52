"""From how many people use a service to how many requests are in flight at its peak.

"1,000 concurrent users" is not 1,000 requests in flight: people online spend most of their time
reading and typing. What a GPU holds is the number of requests being answered at once, which
Little's law gives from the arrival rate and how long each takes: ``in flight = rate x latency``.
Arrivals are random, so the number in flight at any moment is Poisson-distributed around that
mean (an M/G/inf queue); the planner sizes for its 99th percentile, never for more requests than
there are people online.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IN_FLIGHT_QUANTILE = 0.99
# What peakConcurrent defaulted to before it became optional: the load of a blueprint that
# states none at all.
UNSTATED_IN_FLIGHT = 10


@dataclass(frozen=True)
class Load:
    """Requests in flight to size for, and the one-line reasoning behind the number.

    ``peak_rate_per_s`` is set when the load is an arrival rate (requests per day with a peak
    share, or peak requests per second) and ``think_users``/``think_time_s`` when it is people
    alternating between a request and ``think_time_s`` of reading: the planner then sizes an
    open loop (``openloop.estimate_rate``) and derives requests in flight from the predicted
    latency; ``in_flight`` is the estimate over the latency SLO (an upper bound on the mean
    latency), what the blueprint rules compare with.
    """

    in_flight: int
    basis: str
    mean_in_flight: float | None = None
    peak_rate_per_s: float | None = None
    think_users: int | None = None
    think_time_s: float = 0.0

    @property
    def is_rate(self) -> bool:
        return self.peak_rate_per_s is not None or self.think_users is not None


def think_rate(users: int, think_time_s: float, latency_s: float) -> float:
    """Arrival rate of ``users`` people each waiting ``latency_s`` for an answer and then
    reading and typing for ``think_time_s`` before the next (an interactive system's
    response-time law: ``rate = N / (Z + R)``)."""
    return users / max(think_time_s + latency_s, 1e-9)


def poisson_quantile(mean: float, q: float = IN_FLIGHT_QUANTILE) -> int:
    """Smallest n with P(N <= n) >= q for N ~ Poisson(mean)."""
    if mean <= 0:
        return 0
    if mean > 500:  # normal approximation; the pmf below underflows
        return math.ceil(mean + 2.326 * math.sqrt(mean))
    term = math.exp(-mean)
    total, n = term, 0
    while total < q:
        n += 1
        term *= mean / n
        total += term
    return n


def peak_in_flight(
    *,
    peak_concurrent: int | None,
    concurrent: int | None,
    requests_per_day: int | None,
    peak_hour_share: float,
    latency_s: float,
    think_time_s: float | None = None,
    peak_rps: float | None = None,
) -> Load:
    """Requests in flight at the busiest moment, from whichever figures the blueprint gives.

    Precedence: a stated ``peak_concurrent`` (already requests in flight); peak requests per
    second; requests per day with the peak-hour share; people online with a think time; people
    online alone (the worst case: all of them waiting at once). ``latency_s`` (the latency SLO,
    the longest a request may take, so an upper bound on the mean) turns a rate into requests in
    flight; the planner redoes that with each configuration's predicted latency. People online
    bound the result.
    """
    if peak_concurrent:
        return Load(peak_concurrent, f"users.peakConcurrent: {peak_concurrent} requests in flight")
    if peak_rps or requests_per_day:
        if peak_rps:
            rate = float(peak_rps)
            basis = f"users.peakRequestsPerSecond: {rate:g}/s at the peak"
        else:
            rate = (requests_per_day or 0) * peak_hour_share / 3600.0
            basis = (
                f"{requests_per_day:,} requests/day with {peak_hour_share:.0%} in the peak hour "
                f"= {rate:.3g}/s"
            )
        mean = rate * latency_s
        n = max(1, poisson_quantile(mean))
        basis += (
            f"; x {latency_s:g} s latency SLO (the longest a request may take) = at most "
            f"{mean:.3g} in flight on average (Little's law); {IN_FLIGHT_QUANTILE:.0%} of the "
            f"time at most {n}"
        )
        if concurrent and n > concurrent:
            n = concurrent
            basis += f", capped at the {concurrent:,} people online"
        elif concurrent:
            basis += f" (of {concurrent:,} people online)"
        return Load(n, basis, mean_in_flight=mean, peak_rate_per_s=rate)
    if concurrent and think_time_s:
        rate = think_rate(concurrent, think_time_s, latency_s)
        mean = rate * latency_s
        n = min(concurrent, max(1, poisson_quantile(mean)))
        basis = (
            f"{concurrent:,} people online, each reading {think_time_s:g} s between answers: "
            f"{concurrent:,} / ({think_time_s:g} s + latency) = {rate:.3g}/s at the "
            f"{latency_s:g} s latency SLO (at most {concurrent / think_time_s:.3g}/s), "
            f"{mean:.3g} in flight on "
            f"average; {IN_FLIGHT_QUANTILE:.0%} of the time at most {n}"
        )
        return Load(
            n, basis, mean_in_flight=mean, think_users=concurrent, think_time_s=think_time_s
        )
    if concurrent:
        return Load(
            concurrent,
            f"users.concurrent: all {concurrent:,} people online with a request in flight "
            "(no requestsPerDay, thinkTimeS or peakRequestsPerSecond to derive a rate from: "
            "the worst case)",
        )
    return Load(
        UNSTATED_IN_FLIGHT,
        f"no load stated (users.peakConcurrent, requestsPerDay, peakRequestsPerSecond or "
        f"concurrent with thinkTimeS): {UNSTATED_IN_FLIGHT} requests in flight",
    )


def implied_requests_per_day(in_flight: float, latency_s: float, peak_hour_share: float) -> float:
    """Requests a day that ``in_flight`` requests of ``latency_s`` each would be at the peak:
    Little's law gives the peak rate, the peak hour's share of the day the rest."""
    return in_flight / max(latency_s, 1e-9) * 3600.0 / max(peak_hour_share, 1e-9)
