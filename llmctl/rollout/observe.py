"""What each arm of a rollout did in a window: the gateway's per-revision metrics, and a quality
sample asked as subjects that land on a chosen arm.

The gateway counts every answer under the revision that produced it
(``llmctl_gateway_revision_requests_total{revision,outcome}``, the histogram
``llmctl_gateway_revision_ttft_seconds{revision}``); a window is the difference of two scrapes,
so real users' traffic is what decides, and the rollout's own sampled questions only add to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmctl.errors import LlmctlError
from llmctl.gateway.routing import Routing, choose

REQUESTS = "llmctl_gateway_revision_requests"
TTFT = "llmctl_gateway_revision_ttft_seconds"
TOKENS = "llmctl_gateway_revision_completion_tokens"
# outcomes that are the service's fault (a refusal the caller caused is not an error)
ERRORS = ("unavailable", "timeout", "error", "audit_unavailable")


@dataclass(frozen=True)
class Scrape:
    requests: Mapping[tuple[str, str], float]  # (revision, outcome) -> count
    ttft: Mapping[str, Mapping[float, float]]  # revision -> le -> cumulative count
    tokens: Mapping[str, float] = field(default_factory=dict)  # revision -> tokens generated


@dataclass(frozen=True)
class ArmStats:
    revision: str
    requests: int
    errors: int
    ttft_p95_ms: float | None
    answered: int = 0
    completion_tokens: int = 0
    ttft_count: int = 0  # answers with a first token in the window (what the p95 rests on)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "ttft_p95_ms": None if self.ttft_p95_ms is None else round(self.ttft_p95_ms, 1),
            "answered": self.answered,
            "mean_completion_tokens": round(self.completion_tokens / self.answered, 1)
            if self.answered
            else None,
        }

    def minus(self, requests: int, errors: int) -> ArmStats:
        """These figures without ``requests`` of the rollout's own (its quality sample)."""
        return ArmStats(
            self.revision,
            max(0, self.requests - requests),
            max(0, self.errors - errors),
            self.ttft_p95_ms,
            self.answered,
            self.completion_tokens,
            self.ttft_count,
        )


def scrape(gateway_url: str, timeout_s: float = 5.0) -> Scrape:
    """The per-revision series of the gateway's ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        r = httpx.get(gateway_url.rstrip("/") + "/metrics", timeout=timeout_s)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        raise LlmctlError(f"cannot read the gateway's metrics at {gateway_url}: {exc}") from exc
    requests: dict[tuple[str, str], float] = {}
    ttft: dict[str, dict[float, float]] = {}
    tokens: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            rev = s.labels.get("revision")
            if rev is None:
                continue
            if s.name == f"{REQUESTS}_total":
                requests[(rev, s.labels.get("outcome", ""))] = s.value
            elif s.name == f"{TTFT}_bucket":
                ttft.setdefault(rev, {})[float(s.labels["le"])] = s.value
            elif s.name == f"{TOKENS}_total":
                tokens[rev] = s.value
    return Scrape(requests, ttft, tokens)


def p95_ms(before: Mapping[float, float], after: Mapping[float, float]) -> float | None:
    """The 95th percentile of a histogram's window (linear within the bucket), in ms."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = 0.95 * total
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, counts, strict=True):
        if cum >= rank:
            if math.isinf(bound):
                return lower * 1e3
            span = cum - below
            frac = (rank - below) / span if span else 1.0
            return (lower + (bound - lower) * frac) * 1e3
        lower, below = bound, cum
    return lower * 1e3


def window(before: Scrape, after: Scrape, revision: str) -> ArmStats:
    """One revision's requests, errors and TTFT p95 between two scrapes."""
    n = errors = answered = 0.0
    for (rev, outcome), value in after.requests.items():
        if rev != revision:
            continue
        delta = value - before.requests.get((rev, outcome), 0.0)
        n += delta
        if outcome in ERRORS:
            errors += delta
        if outcome == "answered":
            answered += delta
    b, a = before.ttft.get(revision, {}), after.ttft.get(revision, {})
    p95 = p95_ms(b, a)
    count = a.get(math.inf, 0.0) - b.get(math.inf, 0.0)
    tokens = after.tokens.get(revision, 0.0) - before.tokens.get(revision, 0.0)
    return ArmStats(revision, int(n), int(errors), p95, int(answered), int(tokens), int(count))


def subject_for(routing: Routing, role: str, tag: str) -> str:
    """A subject the routing sends to ``role`` (sticky hashing is deterministic, so a few tries
    find one): how a quality sample is asked of one arm without a back door in the gateway."""
    for n in range(100_000):
        subject = f"rollout-{role}-{tag}-{n}"
        if choose(routing, subject).role == role:
            return subject
    raise LlmctlError(f"no subject maps to the {role} arm (is its weight 0?)")


@dataclass
class QualitySample:
    stable: dict[str, Any] = field(default_factory=dict)
    canary: dict[str, Any] = field(default_factory=dict)


def ask_as(
    gateway_url: str,
    questions: Sequence[dict[str, Any]],
    subject_of: Callable[[dict[str, Any]], str],
    token_for: Callable[[str, list[str]], str],
    timeout_s: float = 180.0,
) -> list[dict[str, Any]]:
    """Ask each question as the subject ``subject_of`` picks; records as ``quality.score`` reads."""
    from llmctl.gateway.client import GatewayClient

    client = GatewayClient(gateway_url, timeout=timeout_s)
    out = []
    try:
        for q in questions:
            groups = list(q.get("asker_groups") or [])
            try:
                r = client.ask(q["question"], token=token_for(subject_of(q), groups))
                out.append(
                    {
                        "status": r.status,
                        "outcome": r.body.get("outcome"),
                        "answer": r.body.get("answer"),
                        "citations": [c.get("doc_id") for c in r.body.get("citations") or []],
                        "grounding": r.body.get("grounding"),
                        "revision": (r.body.get("llmctl") or {}).get("revision")
                        or r.body.get("revision"),
                        "error": r.body.get("error") if not r.ok else None,
                    }
                )
            except LlmctlError as exc:
                out.append({"status": None, "error": str(exc), "citations": []})
    finally:
        client.close()
    return out
