"""LLM-SLO-001: the latency SLOs leave the LLM time after retrieval.

Retrieval runs before the first token, so its budget comes out of the TTFT SLO; the answer's
tokens then come out of the end-to-end SLO. A budget that leaves the LLM less than the fastest
catalogue GPU could ever need is an SLO nobody can meet, found now rather than in the load test.
Floors: 50 ms for prefill, 4 ms per output token (a small model on the fastest GPU at batch 1).

Passing::

    requirements: {slo: {ttftP95Ms: 1500, latencyP95Ms: 10000}}
    model: {maxOutputTokens: 512}
    retrieval: {latencyBudgetMs: 150}

Failing (retrieval alone takes the whole TTFT)::

    requirements: {slo: {ttftP95Ms: 100, latencyP95Ms: 10000}}
    retrieval: {latencyBudgetMs: 150}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-SLO-001"
SEVERITY = "error"

MIN_PREFILL_MS = 50.0
MIN_MS_PER_OUTPUT_TOKEN = 4.0


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    slo = bp.requirements.slo
    retrieval = bp.retrieval.latency_budget_ms
    llm_ttft = slo.ttft_p95_ms - retrieval
    if llm_ttft < MIN_PREFILL_MS:
        yield ctx.problem(
            ("requirements", "slo", "ttftP95Ms"),
            f"ttftP95Ms {slo.ttft_p95_ms:g} leaves the LLM {llm_ttft:g} ms after the retrieval "
            f"budget of {retrieval:g} ms (at least {MIN_PREFILL_MS:g} ms needed); raise ttftP95Ms "
            "or lower retrieval.latencyBudgetMs",
        )
    floor = retrieval + MIN_PREFILL_MS + bp.model.max_output_tokens * MIN_MS_PER_OUTPUT_TOKEN
    if slo.latency_p95_ms < floor:
        yield ctx.problem(
            ("requirements", "slo", "latencyP95Ms"),
            f"latencyP95Ms {slo.latency_p95_ms:g} cannot cover retrieval ({retrieval:g} ms) plus "
            f"{bp.model.max_output_tokens} output tokens (at least {floor:g} ms); raise it or lower "
            "model.maxOutputTokens",
        )
    if slo.ttft_p95_ms > slo.latency_p95_ms:
        yield ctx.problem(
            ("requirements", "slo", "ttftP95Ms"),
            "ttftP95Ms is larger than latencyP95Ms; the first token cannot come after the last",
        )
