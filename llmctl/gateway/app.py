"""The gateway's HTTP API: ``POST /v1/ask``, OpenAI-compatible ``POST /v1/chat/completions``,
``/healthz``, ``/readyz`` and ``/metrics``.

One request, in order: authenticate (401) → rate-limit per subject (429) → read the body within
``max_request_bytes`` (413) → validate (400) → retrieve with the caller's groups as the index
prefilter (503/504) → keep hits above ``min_score``; none left → the fixed no-source answer, no
LLM call → compose the bounded prompt → stream from Triton (503 if it is down, 504 on timeout) →
audit record on disk → response (for streams: the audit record is written before the final event).

Every request to ``/v1/*`` that reaches a handler ends with exactly one audit record and one
``requests`` metric increment, whatever its outcome (``_Request.finish`` is the only place that
does either, and it refuses to run twice).

What a caller may not read never enters this module: the retriever only returns chunks whose ACL
intersects the caller's groups, the prompt holds only those, citations are exactly the prompt's
sources, and logs carry counts and ids of the request, never text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from llmctl.gateway.audit import AuditLog, AuditRecord, sha256_text, utc_now_iso
from llmctl.gateway.auth import Authenticator, AuthError, Principal
from llmctl.gateway.backends import (
    BackendTimeout,
    BackendUnavailable,
    LLMClient,
    Retriever,
    TritonLLM,
)
from llmctl.gateway.config import GatewayConfig
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.prompt import (
    NO_SOURCE_ANSWER,
    PLAIN_FRAME,
    ChatFrame,
    PromptPlan,
    build_prompt,
    select_hits,
)
from llmctl.gateway.ratelimit import TokenBucketLimiter

log = logging.getLogger("llmctl.gateway")


class _Refusal(Exception):
    """Ends a request early with a status, an outcome and a message safe to show the caller."""

    def __init__(
        self, status: int, outcome: str, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message
        self.headers = headers or {}


@dataclass
class _Request:
    """Everything one request accumulates on its way to its single audit record."""

    gw: _Gateway
    endpoint: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    t0: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    question: str | None = None
    plan: PromptPlan | None = None
    completion_tokens: int = 0
    retrieval_s: float = 0.0
    llm_s: float = 0.0
    ttft_s: float | None = None
    finished: bool = False

    def timings(self) -> dict[str, float]:
        total = time.perf_counter() - self.t0
        t = {
            "retrieval_ms": self.retrieval_s * 1e3,
            "llm_ms": self.llm_s * 1e3,
            "total_ms": total * 1e3,
            "overhead_ms": (total - self.llm_s) * 1e3,
            "gateway_ms": (total - self.llm_s - self.retrieval_s) * 1e3,
        }
        if self.ttft_s is not None:
            t["ttft_ms"] = self.ttft_s * 1e3
        return {k: round(v, 3) for k, v in t.items()}

    def usage(self) -> dict[str, int]:
        prompt = self.plan.prompt_tokens if self.plan else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.completion_tokens,
            "total_tokens": prompt + self.completion_tokens,
        }

    def _record(self, outcome: str, status: int, error: str | None) -> AuditRecord:
        cfg = self.gw.config
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
            question_sha256=sha256_text(self.question) if self.question is not None else None,
            question=self.question if cfg.audit.include_question_text else None,
            cited_doc_ids=sorted({s.doc_id for s in sources}),
            cited_chunks=[
                {"doc_id": s.doc_id, "chunk_id": s.chunk_id, "chunk_hash": s.chunk_hash}
                for s in sources
            ],
            blueprint_hash=cfg.blueprint_hash,
            engine_hash=cfg.engine_hash,
            index_hash=self.gw.index_hash(),
            prompt_tokens=self.usage()["prompt_tokens"],
            completion_tokens=self.completion_tokens,
            latency_ms=round((time.perf_counter() - self.t0) * 1e3, 3),
            error=error,
        )

    def _account(self, outcome: str, status: int) -> AuditRecord | None:
        if self.finished:
            return None
        self.finished = True
        m = self.gw.metrics
        m.requests.labels(self.endpoint, outcome).inc()
        m.request_seconds.labels(self.endpoint).observe(time.perf_counter() - self.t0)
        if outcome == "answered":
            m.overhead_seconds.observe(max(0.0, time.perf_counter() - self.t0 - self.llm_s))
        m.in_flight.dec()
        log.info(
            "request_id=%s endpoint=%s outcome=%s status=%d sources=%d latency_ms=%.1f",
            self.request_id,
            self.endpoint,
            outcome,
            status,
            len(self.plan.sources) if self.plan else 0,
            (time.perf_counter() - self.t0) * 1e3,
        )
        return self._record(outcome, status, None)

    async def finish(self, outcome: str, status: int, error: str | None = None) -> None:
        """Write this request's one audit record (off the event loop: it fsyncs)."""
        record = self._account(outcome, status)
        if record is not None:
            record.error = error
            await run_in_threadpool(self.gw.audit.write, record)

    def finish_now(self, outcome: str, status: int, error: str | None = None) -> None:
        """Same, blocking: for paths where the task is being cancelled and cannot await."""
        record = self._account(outcome, status)
        if record is not None:
            record.error = error
            self.gw.audit.write(record)


class _Gateway:
    """The app's state: config and the collaborators, created once per app."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        retriever: Retriever | None,
        llm: LLMClient | None,
        authenticator: Authenticator | None,
        audit: AuditLog | None,
    ) -> None:
        self.config = config
        self.metrics = GatewayMetrics()
        self.auth = authenticator or Authenticator(config.auth)
        self.limiter = TokenBucketLimiter(
            config.rate_limit.requests_per_minute, config.rate_limit.burst
        )
        self.audit = audit or AuditLog(
            config.audit.path,
            max_bytes=config.audit.max_bytes,
            backups=config.audit.backups,
            fsync=config.audit.fsync,
        )
        lim = config.limits
        self.llm: LLMClient = llm or TritonLLM(
            config.triton_url,
            config.llm_model,
            connect_timeout_s=lim.triton_connect_timeout_s,
            token_timeout_s=max(lim.triton_first_token_timeout_s, lim.triton_token_timeout_s),
        )
        self.retriever: Retriever = retriever or default_retriever(config)
        self.frame = (
            ChatFrame.from_template(config.chat_template)
            if config.prompt_format == "chat"
            else PLAIN_FRAME
        )

    def index_hash(self) -> str:
        """The config's hash (set by ``llmctl up``) or else the one the opened index reports."""
        return self.config.index_hash or str(getattr(self.retriever, "index_hash", "") or "")

    # -- steps --------------------------------------------------------------------------------
    async def authenticate(self, req: _Request, request: Request) -> None:
        header = request.headers.get("authorization")
        try:
            if self.auth.may_block():
                req.principal = await run_in_threadpool(self.auth.authenticate, header)
            else:
                req.principal = self.auth.authenticate(header)
        except AuthError as exc:
            raise _Refusal(
                401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None

    def rate_limit(self, req: _Request, request: Request) -> None:
        assert req.principal is not None
        key = req.principal.subject
        if req.principal.anonymous and request.client is not None:
            key = f"anonymous@{request.client.host}"
        allowed, wait = self.limiter.acquire(key)
        if not allowed:
            retry = "3600" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise _Refusal(429, "rate_limited", "rate limit exceeded", {"Retry-After": retry})

    async def read_json(self, request: Request) -> dict[str, Any]:
        limit = self.config.limits.max_request_bytes
        too_large = _Refusal(413, "too_large", f"request body larger than {limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        try:
            data = json.loads(b"".join(chunks) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _Refusal(400, "bad_request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Refusal(400, "bad_request", "body must be a JSON object")
        return data

    def check_question(self, question: Any) -> str:
        if not isinstance(question, str) or not question.strip():
            raise _Refusal(400, "bad_request", "'question' must be a non-empty string")
        limit = self.config.limits.max_question_chars
        if len(question) > limit:
            raise _Refusal(400, "bad_request", f"question longer than {limit} characters")
        return question.strip()

    def check_top_k(self, value: Any) -> int:
        lim = self.config.limits
        if value is None:
            return lim.default_top_k
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _Refusal(400, "bad_request", "'top_k' must be a positive integer")
        return min(value, lim.max_top_k)

    async def retrieve(self, req: _Request, top_k: int) -> None:
        assert req.principal is not None and req.question is not None
        t = time.perf_counter()
        try:
            with anyio.fail_after(self.config.limits.retrieval_timeout_s):
                asearch = getattr(self.retriever, "asearch", None)
                if asearch is not None:
                    hits = await asearch(req.question, req.principal.groups, top_k)
                else:
                    hits = await run_in_threadpool(
                        self.retriever.search, req.question, req.principal.groups, top_k
                    )
        except TimeoutError:
            raise _Refusal(504, "timeout", "retrieval timed out") from None
        except BackendUnavailable as exc:
            log.warning("request_id=%s retrieval unavailable: %s", req.request_id, exc)
            raise _Refusal(
                503, "unavailable", "retrieval is unavailable", {"Retry-After": "5"}
            ) from None
        finally:
            req.retrieval_s = time.perf_counter() - t
            self.metrics.retrieval_seconds.observe(req.retrieval_s)
        lim = self.config.limits
        req.plan = build_prompt(
            req.question,
            select_hits(hits, lim.min_score),
            max_input_tokens=lim.max_input_tokens,
            max_source_chars=lim.max_source_chars,
            chars_per_token=lim.chars_per_token,
            frame=self.frame,
        )

    def generate(self, req: _Request) -> AsyncIterator[str]:
        """Deltas from the LLM with timing kept on ``req``; errors become refusals."""
        assert req.plan is not None
        lim = self.config.limits
        agen = self.llm.stream(
            req.plan.text,
            max_tokens=lim.max_output_tokens,
            stop_words=self.config.stop_words,
            temperature=self.config.temperature,
        )

        async def timed() -> AsyncIterator[str]:
            t = time.perf_counter()
            try:
                while True:
                    timeout = (
                        lim.triton_first_token_timeout_s
                        if req.ttft_s is None
                        else lim.triton_token_timeout_s
                    )
                    try:
                        with anyio.fail_after(timeout):
                            delta = await agen.__anext__()
                    except StopAsyncIteration:
                        return
                    except (TimeoutError, BackendTimeout):
                        raise _Refusal(504, "timeout", "the model did not answer in time") from None
                    except BackendUnavailable as exc:
                        log.warning("request_id=%s llm unavailable: %s", req.request_id, exc)
                        raise _Refusal(
                            503, "unavailable", "the model is unavailable", {"Retry-After": "5"}
                        ) from None
                    if req.ttft_s is None:
                        req.ttft_s = time.perf_counter() - req.t0
                        self.metrics.ttft_seconds.observe(req.ttft_s)
                    req.completion_tokens += 1
                    self.metrics.generated_tokens.inc()
                    yield delta
            finally:
                req.llm_s = time.perf_counter() - t
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await agen.aclose()  # type: ignore[attr-defined]

        return timed()

    def result(self, req: _Request, answer: str) -> dict[str, Any]:
        cfg = self.config
        return {
            "answer": answer,
            "citations": [s.citation() for s in (req.plan.sources if req.plan else ())],
            "request_id": req.request_id,
            "blueprint_hash": cfg.blueprint_hash,
            "engine_hash": cfg.engine_hash,
            "index_hash": self.index_hash(),
            "usage": req.usage(),
            "timings": req.timings(),
        }


def default_retriever(config: GatewayConfig) -> Retriever:
    """The real retriever: the LanceDB index in ``config.index_dir``, questions embedded by the
    stack's Triton ``embedder`` model (``llmctl.retrieval``). Imported lazily so this module stays
    importable without the retrieval extras; the index is opened on first use and re-tried until
    it exists.
    """
    from llmctl.gateway.backends import IndexRetriever
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.index import ChunkIndex

    if not config.index_dir:
        raise BackendUnavailable("index: no index_dir in the gateway config")
    embedder = TritonEmbedder(config.triton_grpc_url, timeout_s=config.limits.retrieval_timeout_s)
    index_dir = config.index_dir
    return IndexRetriever(lambda: ChunkIndex.open(index_dir), embedder)


def _sse(event: str | None, data: Any) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    # ASCII-only JSON: no raw U+2028 or other exotic line breaks a client's line splitter may honour
    return f"{prefix}data: {json.dumps(data, ensure_ascii=True)}\n\n".encode()


def create_app(
    config: GatewayConfig,
    *,
    retriever: Retriever | None = None,
    llm: LLMClient | None = None,
    authenticator: Authenticator | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """Build the gateway app. Collaborators default to the real ones built from ``config``."""
    gw = _Gateway(config, retriever=retriever, llm=llm, authenticator=authenticator, audit=audit)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        with contextlib.suppress(Exception):
            await gw.llm.aclose()
        close = getattr(gw.retriever, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        gw.audit.close()

    app = FastAPI(
        title="llmctl gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.gateway = gw

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        llm_ok, llm_detail = await gw.llm.ready()
        idx_ok, idx_detail = await run_in_threadpool(gw.retriever.ready)
        ok = llm_ok and idx_ok
        body = {
            "status": "ready" if ok else "not ready",
            "llm": llm_detail or "ready",
            "index": idx_detail or "ready",
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        if not config.metrics:
            return PlainTextResponse("metrics disabled\n", status_code=404)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/ask")
    async def ask(request: Request) -> Response:
        return await _serve(gw, request, "ask")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _serve(gw, request, "chat")

    return app


async def _serve(gw: _Gateway, request: Request, endpoint: str) -> Response:
    req = _Request(gw, endpoint)
    gw.metrics.in_flight.inc()
    try:
        await gw.authenticate(req, request)
        gw.rate_limit(req, request)
        body = await gw.read_json(request)
        if endpoint == "chat":
            req.question = gw.check_question(_last_user_message(body))
            top_k = gw.check_top_k(body.get("top_k"))
        else:
            req.question = gw.check_question(body.get("question"))
            top_k = gw.check_top_k(body.get("top_k"))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _Refusal(400, "bad_request", "'stream' must be true or false")
        await gw.retrieve(req, top_k)
        assert req.plan is not None
        if not req.plan.sources:
            if stream:
                return StreamingResponse(
                    _no_source_stream(gw, req),
                    media_type="text/event-stream",
                    headers=_headers(req),
                )
            await req.finish("no_source", 200)
            return JSONResponse(
                _shape(gw, req, NO_SOURCE_ANSWER, "no_source"), headers=_headers(req)
            )
        deltas = gw.generate(req)
        if stream:
            first = await anext(deltas, None)  # a down Triton is a 503 now, not a broken stream
            return StreamingResponse(
                _answer_stream(gw, req, deltas, first),
                media_type="text/event-stream",
                headers=_headers(req),
            )
        answer = "".join([d async for d in deltas]).strip()
        await req.finish("answered", 200)
        return JSONResponse(_shape(gw, req, answer, "answered"), headers=_headers(req))
    except _Refusal as refusal:
        await req.finish(refusal.outcome, refusal.status, refusal.message)
        return _error(req, refusal)
    except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
        req.finish_now("client_disconnected", 499)
        raise
    except Exception as exc:
        log.exception("request_id=%s internal error", req.request_id)
        await req.finish("error", 500, type(exc).__name__)
        return _error(req, _Refusal(500, "error", "internal error"))


def _last_user_message(body: dict[str, Any]) -> Any:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Refusal(400, "bad_request", "'messages' must be a non-empty list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts
                content = " ".join(
                    p.get("text", "")
                    for p in content
                    if isinstance(p, dict) and p.get("type") == "text"
                )
            return content
    raise _Refusal(400, "bad_request", "no message with role 'user'")


def _headers(req: _Request) -> dict[str, str]:
    return {"X-Request-ID": req.request_id, "Cache-Control": "no-store"}


def _error(req: _Request, refusal: _Refusal) -> JSONResponse:
    if req.endpoint == "chat":
        body: dict[str, Any] = {
            "error": {"message": refusal.message, "type": refusal.outcome, "code": refusal.status},
            "request_id": req.request_id,
        }
    else:
        body = {"error": refusal.message, "outcome": refusal.outcome, "request_id": req.request_id}
    return JSONResponse(
        body, status_code=refusal.status, headers={**_headers(req), **refusal.headers}
    )


def _shape(gw: _Gateway, req: _Request, answer: str, outcome: str) -> dict[str, Any]:
    result = gw.result(req, answer)
    result["outcome"] = outcome
    if req.endpoint == "ask":
        return result
    return {
        "id": f"chatcmpl-{req.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": gw.config.blueprint_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": result["usage"],
        "citations": result["citations"],
        "llmctl": {
            k: result[k]
            for k in (
                "request_id",
                "blueprint_hash",
                "engine_hash",
                "index_hash",
                "timings",
                "outcome",
            )
        },
    }


def _chunk(
    gw: _Gateway, req: _Request, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{req.request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": gw.config.blueprint_name,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _delta_event(gw: _Gateway, req: _Request, text: str, first: bool) -> bytes:
    if req.endpoint == "ask":
        return _sse("delta", {"delta": text})
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    return _sse(None, _chunk(gw, req, delta, None))


def _final_events(gw: _Gateway, req: _Request, answer: str, outcome: str) -> list[bytes]:
    shaped = _shape(gw, req, answer, outcome)
    if req.endpoint == "ask":
        return [_sse("final", shaped)]
    last = _chunk(gw, req, {}, "stop")
    last.update({k: shaped[k] for k in ("usage", "citations", "llmctl")})
    return [_sse(None, last), b"data: [DONE]\n\n"]


async def _no_source_stream(gw: _Gateway, req: _Request) -> AsyncIterator[bytes]:
    try:
        yield _delta_event(gw, req, NO_SOURCE_ANSWER, True)
        await req.finish("no_source", 200)
        for event in _final_events(gw, req, NO_SOURCE_ANSWER, "no_source"):
            yield event
    finally:
        req.finish_now("client_disconnected", 499)  # no-op when already finished


async def _answer_stream(
    gw: _Gateway, req: _Request, deltas: AsyncIterator[str], first: str | None
) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        if first is not None:
            parts.append(first)
            yield _delta_event(gw, req, first, True)
        try:
            async for delta in deltas:
                parts.append(delta)
                yield _delta_event(gw, req, delta, False)
        except _Refusal as refusal:  # Triton failed mid-stream: the status line is already sent
            await req.finish(refusal.outcome, refusal.status, refusal.message)
            yield _sse(
                "error",
                {
                    "error": refusal.message,
                    "outcome": refusal.outcome,
                    "request_id": req.request_id,
                },
            )
            return
        except Exception as exc:
            log.exception("request_id=%s internal error while streaming", req.request_id)
            await req.finish("error", 500, type(exc).__name__)
            yield _sse(
                "error",
                {"error": "internal error", "outcome": "error", "request_id": req.request_id},
            )
            return
        answer = "".join(parts).strip()
        await req.finish("answered", 200)  # on disk before the caller sees the final event
        for event in _final_events(gw, req, answer, "answered"):
            yield event
    finally:
        req.finish_now("client_disconnected", 499)
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await deltas.aclose()  # type: ignore[attr-defined]
