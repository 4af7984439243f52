"""Per-request bookkeeping: what one request accumulates on its way to its single audit record,
its metrics and its one log line.

Why one object per request with one exit: every request to ``/v1/*`` that reaches a handler must
end with exactly one audit record and one ``requests`` metric increment, whatever its outcome.
``RequestAccount.finish`` (awaited under a shielded cancel scope where the task is being
cancelled) is the only place that does either, and it refuses to run twice, so the pipeline can call it on every path, the
``finally`` of a stream included, without counting anything twice.

Logs carry counts and the request id, never text; the question's text reaches the audit record
only when the blueprint allows it.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from anyio import CapacityLimiter, to_thread

from llmctl.gateway.audit import AuditLog, AuditRecord, AuditUnavailable, utc_now_iso
from llmctl.gateway.auth import Principal
from llmctl.gateway.config import GatewayConfig
from llmctl.gateway.grounding import Grounding, Quote
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.prompt import PromptPlan
from llmctl.gateway.protocol import AskResponse, Citation, GroundingOut, QuoteOut, Refusal, Usage
from llmctl.gateway.questionkeys import question_fields
from llmctl.gateway.routing import Arm

log = logging.getLogger("llmctl.gateway")

#: Outcomes that hand the caller an answer: with audit required, only after a durable record.
ANSWERS = ("answered", "no_source", "audit_read")


class Pools(Protocol):
    """Worker-thread budgets the accounts use (see ``llmctl.gateway.resilience.Pools``)."""

    @property
    def audit(self) -> CapacityLimiter: ...


class Books(Protocol):
    """Where a request's accounts go: the gateway's config, metrics and audit log."""

    config: GatewayConfig
    metrics: GatewayMetrics
    audit: AuditLog

    @property
    def pools(self) -> Pools: ...

    def index_hash(self) -> str: ...


@dataclass
class RequestAccount:
    """Everything one request accumulates on its way to its single audit record."""

    books: Books
    endpoint: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    t0: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    question: str | None = None
    plan: PromptPlan | None = None
    quotes: list[Quote] = field(default_factory=list)  # chosen before generation (grounding)
    grounding: Grounding | None = None  # the check of the generated text, once it is complete
    completion_tokens: int = 0
    retrieval_s: float = 0.0
    llm_s: float = 0.0
    grounding_s: float = 0.0  # quote selection plus the check of the answer
    ttft_s: float | None = None
    finish_reason: str | None = None  # the model's: "stop", "length" (cut at max tokens), ...
    arm: Arm | None = None  # the revision assigned to this request (llmctl.gateway.routing)
    index_hash: str = ""  # the hash of the index version that served this request's search
    client: str | None = None  # the caller's address, kept only when authentication failed
    recorded: bool = True  # False: a suppressed refusal, counted in metrics but not recorded
    suppressed: int | None = None  # refusals from ``client`` not recorded before this one
    finished: bool = False

    @classmethod
    def start(cls, books: Books, endpoint: str) -> RequestAccount:
        """A new account, counted in flight until ``finish``."""
        account = cls(books, endpoint)
        books.metrics.in_flight.inc()
        return account

    def timings(self) -> dict[str, float]:
        total = time.perf_counter() - self.t0
        t = {
            "retrieval_ms": self.retrieval_s * 1e3,
            "llm_ms": self.llm_s * 1e3,
            "total_ms": total * 1e3,
            "overhead_ms": (total - self.llm_s) * 1e3,
            "gateway_ms": (total - self.llm_s - self.retrieval_s) * 1e3,
        }
        if self.grounding is not None:
            t["grounding_ms"] = self.grounding_s * 1e3
        if self.ttft_s is not None:
            t["ttft_ms"] = self.ttft_s * 1e3
        return {k: round(v, 3) for k, v in t.items()}

    def usage(self) -> Usage:
        prompt = self.plan.prompt_tokens if self.plan else 0
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.completion_tokens,
            total_tokens=prompt + self.completion_tokens,
        )

    def result(self, answer: str, outcome: str) -> AskResponse:
        """The request's one result, which each dialect renders. Built after ``finish`` so that
        ``timings`` include the audit write."""
        cfg = self.books.config
        return AskResponse(
            answer=answer,
            citations=[Citation(**s.citation()) for s in (self.plan.sources if self.plan else ())],
            request_id=self.request_id,
            blueprint_hash=cfg.blueprint_hash,
            engine_hash=cfg.engine_hash,
            index_hash=self.index_hash or self.books.index_hash(),
            usage=self.usage(),
            timings=self.timings(),
            outcome=outcome,
            quotes=self.quote_models(),
            grounding=GroundingOut(**self.grounding.as_dict()) if self.grounding else None,
            finish_reason=self.finish_reason,
            revision=self.revision,
        )

    @property
    def revision(self) -> str | None:
        return self.arm.revision if self.arm is not None else (self.books.config.revision or None)

    def quote_models(self) -> list[QuoteOut]:
        sources = {s.number: s for s in (self.plan.sources if self.plan else ())}
        return [
            QuoteOut(**q.as_dict(sources[q.number])) for q in self.quotes if q.number in sources
        ]

    def grounding_fields(self) -> dict[str, object] | None:
        """What the audit keeps of the check: its outcome and figures and which chunks were
        quoted, never the answer's text (the record holds no text unless the blueprint says)."""
        g = self.grounding
        if g is None:
            return None
        sources = {s.number: s for s in (self.plan.sources if self.plan else ())}
        return {
            "outcome": g.outcome,
            "mode": g.mode,
            "score": round(g.score, 4),
            "unsupported": len(g.unsupported),
            "quoted_chunks": list(
                dict.fromkeys(
                    sources[q.number].chunk_id for q in self.quotes if q.number in sources
                )
            ),
        }

    def _record(self, outcome: str, status: int, error: str | None) -> AuditRecord:
        cfg = self.books.config
        sources = self.plan.sources if self.plan else ()
        p = self.principal
        return AuditRecord(
            request_id=self.request_id,
            time=utc_now_iso(),
            endpoint=self.endpoint,
            outcome=outcome,
            status=status,
            subject=p.subject if p else None,
            groups=list(p.groups) if p else [],
            **question_fields(cfg.audit.question_key_path, self.question),
            question=self.question if cfg.audit.include_question_text else None,
            cited_doc_ids=sorted({s.doc_id for s in sources}),
            cited_chunks=[
                {"doc_id": s.doc_id, "chunk_id": s.chunk_id, "chunk_hash": s.chunk_hash}
                for s in sources
            ],
            blueprint_hash=cfg.blueprint_hash,
            engine_hash=cfg.engine_hash,
            index_hash=self.index_hash or self.books.index_hash(),
            prompt_tokens=self.plan.prompt_tokens if self.plan else 0,
            completion_tokens=self.completion_tokens,
            latency_ms=round((time.perf_counter() - self.t0) * 1e3, 3),
            error=error,
            client=self.client,
            suppressed=self.suppressed or None,
            grounding=self.grounding_fields(),
            finish_reason=self.finish_reason,
            revision=self.revision,
        )

    def _close(self, outcome: str, status: int, error: str | None) -> AuditRecord | None:
        """The request's completion record, once; None when it was already finished."""
        if self.finished:
            return None
        record = self._record(outcome, status, error)  # built first: if it raised, a later
        self.finished = True  # finish (the pipeline's error path) could still write one
        self.books.metrics.in_flight.dec()
        if self.arm is not None:
            self.books.metrics.revision_in_flight.labels(self.arm.revision).dec()
        return record

    def _count(self, outcome: str, status: int) -> None:
        m = self.books.metrics
        m.requests.labels(self.endpoint, outcome).inc()
        if self.revision:
            m.revision_requests.labels(self.revision, outcome).inc()
            if self.completion_tokens:
                m.revision_completion_tokens.labels(self.revision).inc(self.completion_tokens)
        m.request_seconds.labels(self.endpoint).observe(time.perf_counter() - self.t0)
        if outcome == "answered":
            m.overhead_seconds.observe(max(0.0, time.perf_counter() - self.t0 - self.llm_s))
            if self.grounding is not None:
                m.grounding.labels(self.endpoint, self.grounding.outcome).inc()
        log.info(
            "request_id=%s endpoint=%s outcome=%s status=%d sources=%d latency_ms=%.1f",
            self.request_id,
            self.endpoint,
            outcome,
            status,
            len(self.plan.sources) if self.plan else 0,
            (time.perf_counter() - self.t0) * 1e3,
        )

    def _settle(self, outcome: str, status: int, durable: bool) -> bool:
        """Count the request; an answer whose record failed (audit required) counts as
        ``audit_unavailable``, which is what its caller is told. True: the caller may answer."""
        required = self.books.config.audit.required
        if not durable:
            self.books.metrics.audit_write_failures.inc()
        refused = not durable and required and outcome in ANSWERS
        self._count("audit_unavailable" if refused else outcome, 503 if refused else status)
        return durable or not required

    async def intent(self) -> None:
        """Before the first byte of a streamed answer: a durable record that it is being given
        (``stage: intent``), so an answer can never leave without a trace. The completion record
        follows. Raises the 503 refusal when the sink cannot take it (audit required)."""
        if not self.books.config.audit.required:
            return
        record = self._record("streaming", 200, None)
        record.stage = "intent"
        try:
            await to_thread.run_sync(self.books.audit.write, record, limiter=self.books.pools.audit)
        except AuditUnavailable as exc:
            self.books.metrics.audit_write_failures.inc()
            raise audit_refusal(exc) from None

    async def finish(self, outcome: str, status: int, error: str | None = None) -> bool:
        """Write this request's one completion record (in the audit's own thread budget: it
        fsyncs) and count it. False: the record failed and audit is required, so an answer must
        not be sent (the caller answers 503 instead)."""
        record = self._close(outcome, status, error)
        if record is None:
            return True
        if not self.recorded:
            self._count(outcome, status)
            return True
        try:
            await to_thread.run_sync(self.books.audit.write, record, limiter=self.books.pools.audit)
        except AuditUnavailable:
            return self._settle(outcome, status, durable=False)
        return self._settle(outcome, status, durable=True)


def audit_refusal(exc: AuditUnavailable) -> Refusal:
    """The 503 a caller gets instead of an answer the audit sink could not record."""
    return Refusal(
        503,
        "audit_unavailable",
        f"{exc}; no answer is given without an audit record",
        {"Retry-After": "5"},
    )
