"""Requests in flight from people and request rates, and the growth plan (seed 001)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmctl.blueprint import load_blueprint
from llmctl.sizing import plan, request_from_blueprint
from llmctl.sizing.growth import in_flight, with_growth
from llmctl.sizing.load import UNSTATED_IN_FLIGHT, peak_in_flight, poisson_quantile

ROOT = Path(__file__).resolve().parents[1]
CHATBOT = ROOT / "blueprints" / "support-chatbot.yaml"


def _poisson_cdf(n: int, mean: float) -> float:
    return sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(n + 1))


@pytest.mark.parametrize("mean", [0.3, 2.2, 11.1, 40.0])
def test_poisson_quantile_is_the_smallest_n_reaching_99_percent(mean: float) -> None:
    n = poisson_quantile(mean, 0.99)
    assert _poisson_cdf(n, mean) >= 0.99 > _poisson_cdf(n - 1, mean)


def test_poisson_quantile_of_a_large_mean_stays_near_the_normal_bound() -> None:
    n = poisson_quantile(10_000.0)
    assert 10_200 <= n <= 10_250  # mean + 2.33 sigma


def test_people_online_are_not_requests_in_flight() -> None:
    # Seed 001: 1,000 people online, 10,000 requests a day, 8 s latency SLO.
    load = peak_in_flight(
        peak_concurrent=None,
        concurrent=1000,
        requests_per_day=10_000,
        peak_hour_share=0.1,
        latency_s=8.0,
    )
    rate = 10_000 * 0.1 / 3600
    assert load.peak_rate_per_s == pytest.approx(rate)
    assert load.mean_in_flight == pytest.approx(rate * 8.0)
    assert load.in_flight == poisson_quantile(rate * 8.0) == 6
    assert "Little's law" in load.basis and "1,000 people online" in load.basis


def test_a_stated_peak_wins_and_people_online_cap_a_derived_one() -> None:
    stated = peak_in_flight(
        peak_concurrent=64, concurrent=10, requests_per_day=10**6, peak_hour_share=1, latency_s=9
    )
    assert stated.in_flight == 64
    capped = peak_in_flight(
        peak_concurrent=None,
        concurrent=10,
        requests_per_day=10**6,
        peak_hour_share=0.5,
        latency_s=9,
    )
    assert capped.in_flight == 10 and "capped" in capped.basis
    alone = peak_in_flight(
        peak_concurrent=None,
        concurrent=300,
        requests_per_day=None,
        peak_hour_share=0.1,
        latency_s=9,
    )
    assert alone.in_flight == 300 and "worst case" in alone.basis
    nothing = peak_in_flight(
        peak_concurrent=None,
        concurrent=None,
        requests_per_day=None,
        peak_hour_share=0.1,
        latency_s=9,
    )
    assert nothing.in_flight == UNSTATED_IN_FLIGHT


def test_support_chatbot_is_sized_for_requests_in_flight_not_people() -> None:
    bp = load_blueprint(CHATBOT)
    req = request_from_blueprint(bp)
    assert (
        bp.requirements.users.concurrent == 1000 and bp.requirements.users.peak_concurrent is None
    )
    assert req.peak_concurrency == 6 and req.design_concurrency == 8
    result = plan(req)
    assert result.chosen.replicas == 2  # replicas.min, for availability
    assert any("Little's law" in a for a in result.assumptions)


def test_growth_plan_scales_load_and_reports_each_budget() -> None:
    bp = load_blueprint(CHATBOT)
    result = with_growth(plan(request_from_blueprint(bp)), bp)
    names = [g.name for g in result.growth]
    assert names == ["phase-2", "phase-3"]
    # Requests in flight each phase's arrival rate settles at on its chosen replicas.
    loads = [in_flight(result.request, result.chosen)] + [g.in_flight for g in result.growth]
    assert loads == sorted(loads) and loads[-1] > 4 * loads[0]
    costs = [result.chosen.monthly_cost_usd] + [g.chosen.monthly_cost_usd for g in result.growth]
    assert costs == sorted(costs)
    for g in result.growth:
        assert g.monthly_budget_usd in (2000, 4000)
        assert g.within_budget == (g.chosen.monthly_cost_usd <= g.monthly_budget_usd)
    # People online scale with the request rate when a phase does not state them.
    assert "10,000 people online" in result.growth[-1].load_basis
    assert result.to_dict()["growth"][0]["name"] == "phase-2"


def test_growth_phase_that_nothing_serves_says_why(tmp_path: Path) -> None:
    text = CHATBOT.read_text().replace("requestsPerDay: 100000", "requestsPerDay: 900000000")
    path = tmp_path / "support-chatbot.yaml"
    path.write_text(text)
    (tmp_path / "corpora").symlink_to(ROOT / "blueprints" / "corpora")
    bp = load_blueprint(path)
    result = with_growth(plan(request_from_blueprint(bp)), bp)
    last = result.growth[-1]
    assert last.chosen is None and last.within_budget is None
    assert "no configuration" in (last.error or "")
