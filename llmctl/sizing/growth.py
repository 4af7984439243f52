"""The scaling plan: the cheapest configuration for each planned load phase, against its budget.

Seed 001's team plans "10K interactions/day on 3 A40s for $500/month, then 50K, then 100K for
$4,000/month". Each phase is planned like today (same model, GPUs, SLOs), without its budget
as a constraint, so that an over-budget phase still says what it would cost and by how much it
misses; a phase that no configuration can serve says why.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from llmctl.errors import SizingError
from llmctl.sizing.blueprint import blueprint_load, load_fields
from llmctl.sizing.planner import Candidate, CapacityPlan, PhasePlan, SizingRequest, plan

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint, GrowthPhase


def _phase_figures(bp: Blueprint, phase: GrowthPhase) -> tuple[int | None, int | None]:
    """(people online, requests/day) of a phase; people scale with requests when omitted."""
    users = bp.requirements.users
    concurrent = phase.concurrent
    if (
        concurrent is None
        and users.concurrent
        and phase.requests_per_day
        and users.requests_per_day
    ):
        concurrent = math.ceil(users.concurrent * phase.requests_per_day / users.requests_per_day)
    return concurrent, phase.requests_per_day


def plan_growth(bp: Blueprint, request: SizingRequest) -> tuple[PhasePlan, ...]:
    """Plan every phase of ``requirements.users.growth`` with today's ``request`` as the base."""
    phases = []
    for phase in bp.requirements.users.growth:
        concurrent, per_day = _phase_figures(bp, phase)
        load = blueprint_load(
            bp,
            peak_concurrent=phase.peak_concurrent,
            concurrent=concurrent,
            requests_per_day=per_day,
        )
        budget = phase.monthly_budget_usd or request.monthly_budget_usd
        phase_request = replace(
            request,
            **load_fields(load),
            monthly_budget_usd=None,
            growth_factor=1.0,
        )
        try:
            chosen, error = plan(phase_request).chosen, None
        except SizingError as exc:
            chosen, error = None, str(exc)
        phases.append(
            PhasePlan(
                name=phase.name,
                after=phase.after,
                in_flight=in_flight(phase_request, chosen),
                load_basis=load.basis + _planned(phase_request, chosen),
                monthly_budget_usd=budget,
                chosen=chosen,
                error=error,
            )
        )
    return tuple(phases)


def in_flight(request: SizingRequest, chosen: Candidate | None) -> int:
    """Requests in flight a phase is sized for: stated (closed loop), or what its arrival rate
    settles at on the chosen replicas by Little's law (open loop)."""
    if not request.is_rate or chosen is None:
        return request.design_concurrency
    total = chosen.rate_per_replica * chosen.replicas * chosen.latency_ms / 1e3
    return max(1, math.ceil(total))


def _planned(request: SizingRequest, chosen: Candidate | None) -> str:
    """For an open-loop phase: the requests in flight at the chosen replicas' predicted latency
    (the basis above uses the latency SLO, an upper bound)."""
    if not request.is_rate or chosen is None:
        return ""
    rate = chosen.rate_per_replica * chosen.replicas
    return (
        f"; planned: {rate:.3g}/s with headroom x {chosen.latency_ms / 1e3:.2f} s predicted "
        f"latency = {rate * chosen.latency_ms / 1e3:.3g} in flight over {chosen.replicas} "
        "replicas (Little's law)"
    )


def with_growth(result: CapacityPlan, bp: Blueprint) -> CapacityPlan:
    """``result`` with the blueprint's scaling plan attached (unchanged when it has none)."""
    if not bp.requirements.users.growth:
        return result
    return replace(result, growth=plan_growth(bp, result.request))
