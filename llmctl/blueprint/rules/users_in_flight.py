"""LLM-USR-001: requests in flight agree with the people online and the request rate.

``peakConcurrent`` counts requests being answered at once, not people online; mistaking one for
the other sizes a service for hundreds of times its load. Checks: more requests in flight than
people online is impossible (each person waits for an answer: an error); and every other way
the blueprint states the load (requests in flight, peak requests per second, people online with
a think time) is turned into requests a day by Little's law over the latency SLO and the peak
hour's share, and flagged when it is more than 10x off ``requestsPerDay`` either way: "1,000 in
flight at 8 s each is about 4.5 million requests a day (10.8 million round the clock), not
10,000".

Passing::

    requirements:
      users: {concurrent: 1000, requestsPerDay: 10000}   # planner derives ~6 in flight

Failing::

    requirements:
      users: {peakConcurrent: 1000, requestsPerDay: 10000}   # 10,000/day gives ~6 in flight
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-USR-001"
SEVERITY = "error"
# How far above the request rate's figure a stated peak may be before it reads as people online.
IMPLAUSIBLE_RATIO = 10.0


def check(ctx: RuleContext) -> Iterator[Problem]:
    from llmctl.sizing.load import implied_requests_per_day, peak_in_flight, think_rate

    users = ctx.bp.requirements.users
    base = ("requirements", "users")
    stated = users.peak_concurrent
    latency_s = ctx.bp.requirements.slo.latency_p95_ms / 1000.0
    share = float(users.peak_hour_share)
    if stated is not None and users.concurrent is not None and stated > users.concurrent:
        yield ctx.problem(
            (*base, "peakConcurrent"),
            f"peakConcurrent {stated:,} requests in flight exceeds the {users.concurrent:,} "
            "people online (users.concurrent): each person waits for an answer; lower "
            "peakConcurrent or omit it to derive it from requestsPerDay",
        )
        return
    per_day = users.requests_per_day
    if not per_day:
        return
    # Each other way of stating the load, turned into requests a day (Little's law over the
    # latency SLO, the peak hour's share of the day), against the stated requests a day.
    claims: list[tuple[str, float, str]] = []  # (field, how far off, why)
    if stated is not None:
        # A stated peak is a high percentile with headroom, not the mean: compare it with the
        # percentile the planner would derive, and only upwards (people counted as requests).
        derived = peak_in_flight(
            peak_concurrent=None,
            concurrent=users.concurrent,
            requests_per_day=per_day,
            peak_hour_share=share,
            latency_s=latency_s,
        ).in_flight
        implied = implied_requests_per_day(stated, latency_s, share)
        claims.append(
            (
                "peakConcurrent",
                max(stated / max(derived, 1), 1.0),
                f"{stated:,} requests in flight at {latency_s:g} s each is "
                f"{stated / latency_s:,.3g} requests/s; with {share:.0%} of the day in the peak "
                f"hour that is about {_words(implied)} requests a day, not {per_day:,}; if "
                f"{stated:,} counts people online, move it to users.concurrent and let the "
                "planner derive requests in flight",
            )
        )
    rps = getattr(users, "peak_requests_per_s", None)
    if rps:
        implied = rps * 3600.0 / share
        claims.append(
            (
                "peakRequestsPerSecond",
                implied / per_day,
                f"{rps:g} requests/s at the peak with {share:.0%} of the day in the peak hour "
                f"is about {_words(implied)} requests a day, not {per_day:,}",
            )
        )
    think = getattr(users, "think_time_s", None)
    if think and users.concurrent:
        rate = think_rate(users.concurrent, think, latency_s)
        implied = rate * 3600.0 / share
        claims.append(
            (
                "thinkTimeS",
                implied / per_day,
                f"{users.concurrent:,} people online asking every {think:g} s (+ up to "
                f"{latency_s:g} s for the answer) is at least {rate:.3g} requests/s, about "
                f"{_words(implied)} requests a day at a {share:.0%} peak hour, not {per_day:,}",
            )
        )
    for field, ratio, message in claims:
        if ratio > IMPLAUSIBLE_RATIO or ratio < 1.0 / IMPLAUSIBLE_RATIO:
            yield ctx.problem((*base, field), message, severity="warning")


def _words(n: float) -> str:
    """A large count as a person would say it: 4.5 million, 36,000."""
    if n >= 1e9:
        return f"{n / 1e9:.3g} billion"
    if n >= 1e6:
        return f"{n / 1e6:.3g} million"
    return f"{n:,.0f}"
