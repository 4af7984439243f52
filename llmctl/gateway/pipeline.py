"""One request through the gateway, whichever endpoint it came in by.

In order: authenticate (401) → rate-limit per subject (429) → read the body within
``max_request_bytes`` (413) → validate it with the endpoint's model (400) → retrieve with the
caller's groups as the index prefilter (503/504) → keep hits above ``min_score``; none left → the
fixed no-source answer, no LLM call → compose the bounded prompt → stream from Triton (503 if it is
down, 504 on timeout) → audit record on disk → response.

Audit order (tests pin it; keep it): a JSON response, answer or refusal, is sent only after
``finish`` has written the audit record (fsynced unless the config turns fsync off). A stream
sends its deltas as they are generated, and its closing event (``final``, or the OpenAI dialect's
last chunk and ``[DONE]``; ``error`` when it fails) only after ``finish`` returned, so a caller
that has seen the end of an answer can find its audit record.

Nothing here asks which endpoint it serves: the ``Dialect`` (``llmctl.gateway.dialects``) gives
the request model and renders every body and event. Every request ends with exactly one audit
record and one ``requests`` metric increment through ``RequestAccount.finish``
(``llmctl.gateway.accounting``), which refuses to run twice.

What a caller may not read never enters this module: the retriever only returns chunks whose ACL
intersects the caller's groups, the prompt holds only those, citations are exactly the prompt's
sources, and logs carry counts and ids of the request, never text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from llmctl.gateway.accounting import RequestAccount
from llmctl.gateway.audit import AuditLog
from llmctl.gateway.auth import Authenticator, AuthError
from llmctl.gateway.backends import BackendTimeout, BackendUnavailable, LLMClient, Retriever
from llmctl.gateway.config import GatewayConfig
from llmctl.gateway.dialects import SSE_MEDIA_TYPE, Dialect
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.prompt import NO_SOURCE_ANSWER, ChatFrame, build_prompt, select_hits
from llmctl.gateway.protocol import BadRequest, GatewayRequest, Refusal, json_object, parse_request
from llmctl.gateway.ratelimit import TokenBucketLimiter

log = logging.getLogger("llmctl.gateway")


@dataclass(eq=False)
class Gateway:
    """The app's state, created once per app (``create_app``), and the pipeline's steps."""

    config: GatewayConfig
    metrics: GatewayMetrics
    auth: Authenticator
    limiter: TokenBucketLimiter
    audit: AuditLog
    llm: LLMClient
    retriever: Retriever
    frame: ChatFrame

    def index_hash(self) -> str:
        """The config's hash (set by ``llmctl up``) or else the one the opened index reports."""
        return self.config.index_hash or str(getattr(self.retriever, "index_hash", "") or "")

    # -- steps, in pipeline order ---------------------------------------------------------------
    async def authenticate(self, req: RequestAccount, request: Request) -> None:
        header = request.headers.get("authorization")
        try:
            if self.auth.may_block():
                req.principal = await run_in_threadpool(self.auth.authenticate, header)
            else:
                req.principal = self.auth.authenticate(header)
        except AuthError as exc:
            raise Refusal(
                401, "unauthorized", str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None

    def rate_limit(self, req: RequestAccount, request: Request) -> None:
        assert req.principal is not None
        key = req.principal.subject
        if req.principal.anonymous and request.client is not None:
            key = f"anonymous@{request.client.host}"
        allowed, wait = self.limiter.acquire(key)
        if not allowed:
            retry = "3600" if math.isinf(wait) else str(max(1, math.ceil(wait)))
            raise Refusal(429, "rate_limited", "rate limit exceeded", {"Retry-After": retry})

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, refused with 413 as soon as it outgrows the limit: a
        declared length is checked before reading, a chunked body while it is read."""
        limit = self.config.limits.max_request_bytes
        too_large = Refusal(413, "too_large", f"request body larger than {limit} bytes")
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
        return json_object(b"".join(chunks))

    def parse(
        self, req: RequestAccount, model: type[GatewayRequest], body: dict[str, Any]
    ) -> GatewayRequest:
        """The body validated by its dialect's model. The question goes on ``req`` once valid:
        a request refused for a later field is audited with it."""
        try:
            asked = parse_request(
                model, body, max_question_chars=self.config.limits.max_question_chars
            )
        except BadRequest as bad:
            req.question = bad.question
            raise
        req.question = asked.question
        return asked

    async def retrieve(self, req: RequestAccount, top_k: int | None) -> None:
        """Hits readable by the caller, as ``req.plan``; ``top_k`` is the caller's (None: the
        default), bounded by ``max_top_k``."""
        assert req.principal is not None and req.question is not None
        lim = self.config.limits
        top_k = lim.default_top_k if top_k is None else min(top_k, lim.max_top_k)
        t = time.perf_counter()
        try:
            with anyio.fail_after(lim.retrieval_timeout_s):
                asearch = getattr(self.retriever, "asearch", None)
                if asearch is not None:
                    hits = await asearch(req.question, req.principal.groups, top_k)
                else:
                    hits = await run_in_threadpool(
                        self.retriever.search, req.question, req.principal.groups, top_k
                    )
        except TimeoutError:
            raise Refusal(504, "timeout", "retrieval timed out") from None
        except BackendUnavailable as exc:
            log.warning("request_id=%s retrieval unavailable: %s", req.request_id, exc)
            raise Refusal(
                503, "unavailable", "retrieval is unavailable", {"Retry-After": "5"}
            ) from None
        finally:
            req.retrieval_s = time.perf_counter() - t
            self.metrics.retrieval_seconds.observe(req.retrieval_s)
        req.plan = build_prompt(
            req.question,
            select_hits(hits, lim.min_score),
            max_input_tokens=lim.max_input_tokens,
            max_source_chars=lim.max_source_chars,
            chars_per_token=lim.chars_per_token,
            frame=self.frame,
        )

    def generate(self, req: RequestAccount) -> AsyncIterator[str]:
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
                        raise Refusal(504, "timeout", "the model did not answer in time") from None
                    except BackendUnavailable as exc:
                        log.warning("request_id=%s llm unavailable: %s", req.request_id, exc)
                        raise Refusal(
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


async def serve(gw: Gateway, request: Request, dialect: Dialect) -> Response:
    """Answer one request in ``dialect``; every path ends in ``req.finish`` exactly once."""
    req = RequestAccount.start(gw, dialect.endpoint)
    try:
        await gw.authenticate(req, request)
        gw.rate_limit(req, request)
        asked = gw.parse(req, dialect.request_model, await gw.read_json(request))
        await gw.retrieve(req, asked.top_k)
        assert req.plan is not None
        if not req.plan.sources:
            if asked.stream:
                return _event_stream(req, _no_source_stream(dialect, req))
            await req.finish("no_source", 200)
            return _json(req, dialect.body(req.result(NO_SOURCE_ANSWER, "no_source")))
        deltas = gw.generate(req)
        if asked.stream:
            first = await anext(deltas, None)  # a down Triton is a 503 now, not a broken stream
            return _event_stream(req, _answer_stream(dialect, req, deltas, first))
        answer = "".join([d async for d in deltas]).strip()
        await req.finish("answered", 200)
        return _json(req, dialect.body(req.result(answer, "answered")))
    except Refusal as refusal:
        await req.finish(refusal.outcome, refusal.status, refusal.message)
        return _error(dialect, req, refusal)
    except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
        req.finish_now("client_disconnected", 499)
        raise
    except Exception as exc:
        log.exception("request_id=%s internal error", req.request_id)
        await req.finish("error", 500, type(exc).__name__)
        return _error(dialect, req, Refusal(500, "error", "internal error"))


def _headers(req: RequestAccount) -> dict[str, str]:
    return {"X-Request-ID": req.request_id, "Cache-Control": "no-store"}


def _json(req: RequestAccount, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_headers(req))


def _error(dialect: Dialect, req: RequestAccount, refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        dialect.error_body(refusal, req.request_id),
        status_code=refusal.status,
        headers={**_headers(req), **refusal.headers},
    )


def _event_stream(req: RequestAccount, events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(events, media_type=SSE_MEDIA_TYPE, headers=_headers(req))


async def _no_source_stream(dialect: Dialect, req: RequestAccount) -> AsyncIterator[bytes]:
    try:
        yield dialect.delta(NO_SOURCE_ANSWER, True, req.request_id)
        await req.finish("no_source", 200)  # on disk before the caller sees the final event
        for event in dialect.final(req.result(NO_SOURCE_ANSWER, "no_source")):
            yield event
    finally:
        req.finish_now("client_disconnected", 499)  # no-op when already finished


async def _answer_stream(
    dialect: Dialect, req: RequestAccount, deltas: AsyncIterator[str], first: str | None
) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        if first is not None:
            parts.append(first)
            yield dialect.delta(first, True, req.request_id)
        try:
            async for delta in deltas:
                parts.append(delta)
                yield dialect.delta(delta, False, req.request_id)
        except Refusal as refusal:  # Triton failed mid-stream: the status line is already sent
            await req.finish(refusal.outcome, refusal.status, refusal.message)
            yield dialect.stream_error(refusal, req.request_id)
            return
        except Exception as exc:
            log.exception("request_id=%s internal error while streaming", req.request_id)
            await req.finish("error", 500, type(exc).__name__)
            yield dialect.stream_error(Refusal(500, "error", "internal error"), req.request_id)
            return
        answer = "".join(parts).strip()
        await req.finish("answered", 200)  # on disk before the caller sees the final event
        for event in dialect.final(req.result(answer, "answered")):
            yield event
    finally:
        req.finish_now("client_disconnected", 499)
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await deltas.aclose()  # type: ignore[attr-defined]
