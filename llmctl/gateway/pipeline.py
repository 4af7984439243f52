"""One request through the gateway, whichever endpoint it came in by.

In order: authenticate (401) → rate-limit per subject (429) → read the body within
``max_request_bytes`` (413) → validate it with the endpoint's model (400) → retrieve with the
caller's groups as the index prefilter (503/504) → keep hits above ``min_score``; none left → the
fixed no-source answer, no LLM call → compose the bounded prompt → stream from Triton (503 if it is
down, 504 on timeout) → audit record on disk → response.

Audit order (tests pin it; keep it): a JSON response, answer or refusal, is sent only after
``finish`` has written the audit record (fsynced unless the config turns fsync off). With audit
required, a stream first writes an intent record (``stage: intent``) and sends its status line
and deltas only once that is durable; its closing event (``final``, or the OpenAI dialect's last
chunk and ``[DONE]``; ``error`` when it fails) follows the completion record. A sink that fails
turns an answer into a JSON 503 naming the sink (``audit_unavailable``), never an unrecorded
answer, and ``/readyz`` reports 503 until the sink takes records again.

Grounding (``llmctl.gateway.grounding``): quotes are chosen from the prompt's sources before
generation; the complete answer is checked against them before it is recorded. With
``grounding: enforce`` no answer byte leaves unchecked, so a stream is generated and checked
first and then sent after its intent record (its TTFT is the whole generation); with ``report``
it streams as generated and the check rides on its ``final`` event.

Every call to Triton has a deadline, and after one fails the ``Breaker`` answers 503 at once
until a bounded probe sees Triton healthy again (``llmctl.gateway.resilience``).

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
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from llmctl.gateway import grounding
from llmctl.gateway.accounting import RequestAccount, audit_refusal
from llmctl.gateway.audit import AuditLog, AuditUnavailable
from llmctl.gateway.auth import Authenticator, AuthError
from llmctl.gateway.backends import BackendTimeout, BackendUnavailable, LLMClient, Retriever
from llmctl.gateway.config import GatewayConfig
from llmctl.gateway.decoding import answer_embedder, output_tokens, sampling_options
from llmctl.gateway.dialects import SSE_MEDIA_TYPE, Dialect
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.prompt import NO_SOURCE_ANSWER, ChatFrame, build_prompt, select_hits
from llmctl.gateway.protocol import BadRequest, GatewayRequest, Refusal, json_object, parse_request
from llmctl.gateway.ratelimit import TokenBucketLimiter
from llmctl.gateway.resilience import Breaker, Pools, UnauthenticatedGuard, retry_after
from llmctl.gateway.routing import Arm, Router
from llmctl.gateway.tokens import TokenCounter

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
    tokens: TokenCounter  # the served model's tokenizer (or its bound): sizes every prompt
    router: Router | None = None  # which revision answers (None: from config.routing_path)

    def __post_init__(self) -> None:
        rl = self.config.rate_limit
        self.pools = Pools()
        self.breaker = Breaker(self._backends_ready)
        self.breaker.on_change = lambda is_open: self.metrics.backend_open.set(int(is_open))
        self.guard = UnauthenticatedGuard(rl.unauthenticated_per_minute, rl.unauthenticated_burst)
        self.sampling = sampling_options(self.llm, self.config)
        self.reports_finish = takes_option(self.llm, "on_finish")
        self.embed = answer_embedder(self.retriever, self.pools)
        if self.router is None:
            path = self.config.routing_path
            self.router = Router(Path(path) if path else None, self.config.revision)
        self._llms: dict[str, LLMClient] = {}

    # -- revisions (llmctl.gateway.routing) -------------------------------------------------------
    def assign(self, req: RequestAccount) -> Arm:
        """The revision this request is served by: sticky per subject, from the routing file."""
        if req.arm is None:
            assert self.router is not None
            subject = (
                req.principal.subject if req.principal and not req.principal.anonymous else None
            )
            req.arm = self.router.choose(subject, req.request_id)
            self.metrics.revision_in_flight.labels(req.arm.revision).inc()
        return req.arm

    def setting(self, req: RequestAccount, name: str, default: Any) -> Any:
        """The arm's value of a per-revision setting (``llmctl.rollout.revisions.SETTINGS``)."""
        value = (req.arm.settings if req.arm is not None else {}).get(name)
        return default if value is None else value

    def llm_for(self, arm: Arm | None) -> LLMClient:
        """The client of the arm's model version (the configured one when it names none)."""
        version = arm.llm_version if arm is not None else None
        url = arm.llm_url if arm is not None else None
        if version is None and url is None:
            return self.llm
        key = f"{url or ''}#{version or ''}"
        if key not in self._llms:
            sibling = getattr(self.llm, "for_version", None)
            self._llms[key] = sibling(version, url) if sibling is not None else self.llm
        return self._llms[key]

    def canary(self, req: RequestAccount) -> bool:
        """A canary's own model failing must not trip the breaker for the stable revision."""
        return req.arm is not None and req.arm.role in ("canary", "b")

    async def _backends_ready(self) -> tuple[bool, str]:
        """What the breaker probes: Triton's LLM and, where the retriever can say, its embedder."""
        ok, detail = await self.llm.ready()
        aready = getattr(self.retriever, "aready", None)
        if ok and aready is not None:
            ok, detail = await aready()
        return ok, detail

    def index_hash(self) -> str:
        """The hash the opened index reports now (it follows ``llmctl ingest``), else the one
        ``llmctl up`` put in the config. A request records the hash of the search that served
        it (``RequestAccount.index_hash``); this is for requests that never searched."""
        live = str(getattr(self.retriever, "index_hash", "") or "")
        return live or self.config.index_hash

    # -- steps, in pipeline order ---------------------------------------------------------------
    async def authenticate(self, req: RequestAccount, request: Request) -> None:
        header = request.headers.get("authorization")
        try:
            if self.auth.may_block():
                req.principal = await anyio.to_thread.run_sync(
                    self.auth.authenticate, header, limiter=self.pools.auth
                )
            else:
                req.principal = self.auth.authenticate(header)
        except AuthError as exc:
            address = request.client.host if request.client is not None else "unknown"
            req.client = address
            allowed, wait = self.guard.admit(address)
            if not allowed:
                req.recorded, req.suppressed = self.guard.record_refusal(address)
                raise Refusal(
                    429,
                    "rate_limited",
                    "too many unauthenticated requests from this address",
                    {"Retry-After": retry_after(wait)},
                ) from None
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
            raise Refusal(
                429, "rate_limited", "rate limit exceeded", {"Retry-After": retry_after(wait)}
            )

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, refused with 413 as soon as it outgrows the limit: a
        declared length is checked before reading, a chunked body while it is read.

        The whole read is bounded by ``body_timeout_s`` (408): a client that declares a body and
        then trickles or withholds it must not hold a request slot open (slowloris). The 408
        says ``Connection: close``: the rest of that body may still be on its way, so the
        connection cannot carry another request and uvicorn closes it after the response."""
        lim = self.config.limits
        limit = lim.max_request_bytes
        too_large = Refusal(413, "too_large", f"request body larger than {limit} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(lim.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(
                408,
                "request_timeout",
                f"request body not received within {lim.body_timeout_s:g} s",
                {"Connection": "close"},
            ) from None
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
        self.assign(req)
        default_top_k = int(self.setting(req, "top_k", lim.default_top_k))
        top_k = default_top_k if top_k is None else min(top_k, lim.max_top_k)
        self.fail_fast()
        t = time.perf_counter()
        try:
            # The embedder's own gRPC deadline is retrieval_timeout_s; this scope is the backstop.
            with anyio.fail_after(lim.retrieval_timeout_s + 1.0):
                asearch = getattr(self.retriever, "asearch", None)
                if asearch is not None:
                    hits = await asearch(req.question, req.principal.groups, top_k)
                else:
                    hits = await anyio.to_thread.run_sync(
                        self.retriever.search,
                        req.question,
                        req.principal.groups,
                        top_k,
                        limiter=self.pools.index,
                    )
        except (TimeoutError, BackendTimeout):
            self.breaker.trip("the retrieval service did not answer in time")
            raise Refusal(504, "timeout", "retrieval timed out", {"Retry-After": "5"}) from None
        except BackendUnavailable as exc:
            log.warning("request_id=%s retrieval unavailable: %s", req.request_id, exc)
            self.breaker.trip("the retrieval service is unavailable")
            raise Refusal(
                503, "unavailable", "retrieval is unavailable", {"Retry-After": "5"}
            ) from None
        finally:
            req.retrieval_s = time.perf_counter() - t
            self.metrics.retrieval_seconds.observe(req.retrieval_s)
        req.index_hash = str(getattr(hits, "index_hash", "") or "")
        # In a worker: counting a prompt's real tokens is ~2-3 ms of C (llama.cpp releases the
        # GIL), which would otherwise hold the event loop for every other request.
        req.plan = await anyio.to_thread.run_sync(
            functools.partial(
                build_prompt,
                req.question,
                select_hits(hits, float(self.setting(req, "min_score", lim.min_score))),
                max_input_tokens=int(self.setting(req, "max_input_tokens", lim.max_input_tokens)),
                max_source_chars=lim.max_source_chars,
                tokens=self.tokens,
                frame=self.frame,
            ),
            limiter=self.pools.index,
        )
        t = time.perf_counter()
        req.quotes = grounding.select_quotes(grounding.candidates(req.question, req.plan.sources))
        req.grounding_s += time.perf_counter() - t

    async def ground(self, req: RequestAccount, answer: str) -> str:
        """Check the complete generated ``answer`` against its quotes (``req.grounding``) and
        return what the caller gets: with ``enforce``, the quotes instead of an unsupported
        answer."""
        assert req.plan is not None and req.question is not None
        t = time.perf_counter()
        try:
            req.grounding = await grounding.check(
                answer,
                req.question,
                req.plan.sources,
                req.quotes,
                mode=self.config.grounding,
                embed=self.embed,
            )
        except (BackendTimeout, BackendUnavailable) as exc:  # the embedder, for a rare sentence
            log.warning("request_id=%s grounding without the embedder: %s", req.request_id, exc)
            req.grounding = await grounding.check(
                answer, req.question, req.plan.sources, req.quotes, mode=self.config.grounding
            )
        text = grounding.compose(answer, req.grounding, req.quotes)
        req.grounding_s += time.perf_counter() - t
        self.metrics.grounding_seconds.observe(req.grounding_s)
        return text

    def fail_fast(self) -> None:
        """503 at once while Triton is considered down (see ``resilience.Breaker``)."""
        reason = self.breaker.allow()
        if reason is not None:
            raise Refusal(503, "unavailable", f"{reason}; retry shortly", {"Retry-After": "2"})

    def finish_hook(self, req: RequestAccount) -> dict[str, Any]:
        """``on_finish`` for clients that report why the model stopped (the LLM-API model's
        ``finish_reason``): it lands on the account, so the answer and its record say it."""
        if not self.reports_finish:
            return {}
        return {"on_finish": functools.partial(setattr, req, "finish_reason")}

    def generate(self, req: RequestAccount) -> AsyncIterator[str]:
        """Deltas from the LLM with timing kept on ``req``; errors become refusals."""
        assert req.plan is not None
        lim = self.config.limits
        assert req.question is not None
        budget = int(self.setting(req, "max_output_tokens", lim.max_output_tokens))
        sampling = {k: self.setting(req, k, v) for k, v in self.sampling.items()}
        agen = self.llm_for(req.arm).stream(
            req.plan.text,
            max_tokens=output_tokens(req.question, budget),
            stop_words=tuple(self.setting(req, "stop_words", self.config.stop_words)),
            temperature=float(self.setting(req, "temperature", self.config.temperature)),
            **sampling,
            **self.finish_hook(req),
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
                        if not self.canary(req):
                            self.breaker.trip("the model did not answer in time")
                        raise Refusal(
                            504, "timeout", "the model did not answer in time", {"Retry-After": "5"}
                        ) from None
                    except BackendUnavailable as exc:
                        log.warning("request_id=%s llm unavailable: %s", req.request_id, exc)
                        if not self.canary(req):
                            self.breaker.trip("the model is unavailable")
                        raise Refusal(
                            503, "unavailable", "the model is unavailable", {"Retry-After": "5"}
                        ) from None
                    if req.ttft_s is None:
                        req.ttft_s = time.perf_counter() - req.t0
                        self.metrics.ttft_seconds.observe(req.ttft_s)
                        if req.revision:
                            self.metrics.revision_ttft_seconds.labels(req.revision).observe(
                                req.ttft_s
                            )
                    req.completion_tokens += 1
                    self.metrics.generated_tokens.inc()
                    yield delta
            finally:
                req.llm_s = time.perf_counter() - t
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await agen.aclose()  # type: ignore[attr-defined]

        return timed()


async def serve(gw: Gateway, request: Request, dialect: Dialect) -> Response:
    """Answer one request in ``dialect``; every path ends in ``req.finish`` exactly once.

    No answer byte leaves before its audit record is durable: a JSON answer is sent after
    ``finish`` succeeded, a stream's first byte after ``intent`` did; when the sink fails (audit
    required) the caller gets a 503 naming it instead.
    """
    req = RequestAccount.start(gw, dialect.endpoint)
    try:
        await gw.authenticate(req, request)
        gw.rate_limit(req, request)
        asked = gw.parse(req, dialect.request_model, await gw.read_json(request))
        await gw.retrieve(req, asked.top_k)
        assert req.plan is not None
        if not req.plan.sources:
            if asked.stream:
                await req.intent()
                return _event_stream(req, _no_source_stream(dialect, req))
            if not await req.finish("no_source", 200):
                return _error(dialect, req, _audit_failed(gw.audit))
            return _json(req, dialect.body(req.result(NO_SOURCE_ANSWER, "no_source")))
        deltas = gw.generate(req)
        if asked.stream and gw.config.grounding != "enforce":
            first = await anext(deltas, None)  # a down Triton is a 503 now, not a broken stream
            try:
                await req.intent()
            except Refusal:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await deltas.aclose()  # type: ignore[attr-defined]
                raise
            return _event_stream(req, _answer_stream(gw, dialect, req, deltas, first))
        if asked.stream:
            # enforce: the verbatim quotes go out at the first token (they need no check); the
            # generated text only once it is complete and checked (_checked_stream)
            first = await anext(deltas, None)
            try:
                await req.intent()
            except Refusal:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await deltas.aclose()  # type: ignore[attr-defined]
                raise
            return _event_stream(req, _checked_stream(gw, dialect, req, deltas, first))
        answer = await gw.ground(req, "".join([d async for d in deltas]).strip())
        if not await req.finish("answered", 200):
            return _error(dialect, req, _audit_failed(gw.audit))
        return _json(req, dialect.body(req.result(answer, "answered")))
    except Refusal as refusal:
        if refusal.outcome == "audit_unavailable":  # nothing can be recorded: count it only
            req.recorded = False
        await req.finish(refusal.outcome, refusal.status, refusal.message)
        return _error(dialect, req, refusal)
    except (asyncio.CancelledError, anyio.get_cancelled_exc_class()):
        with anyio.CancelScope(shield=True):  # the write runs in the audit's threads, not here
            await req.finish("client_disconnected", 499)
        raise
    except Exception as exc:
        log.exception("request_id=%s internal error", req.request_id)
        await req.finish("error", 500, type(exc).__name__)
        return _error(dialect, req, Refusal(500, "error", "internal error"))


def _audit_failed(audit: AuditLog) -> Refusal:
    return audit_refusal(AuditUnavailable(audit.failing or f"audit sink {audit.path}"))


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


class _ClosingStream(StreamingResponse):
    """A StreamingResponse that always closes its body: when the client goes away while a send
    is blocked, Starlette cancels the response and leaves the generator suspended, so its
    ``finally`` (the completion record, the Triton stream) would wait for the garbage collector."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await close()


def _event_stream(req: RequestAccount, events: AsyncIterator[bytes]) -> StreamingResponse:
    return _ClosingStream(events, media_type=SSE_MEDIA_TYPE, headers=_headers(req))


async def _no_source_stream(dialect: Dialect, req: RequestAccount) -> AsyncIterator[bytes]:
    try:
        yield dialect.delta(NO_SOURCE_ANSWER, True, req.request_id)
        async for event in _closing_events(dialect, req, NO_SOURCE_ANSWER, "no_source"):
            yield event
    finally:
        with anyio.CancelScope(shield=True):  # no-op when already finished
            await req.finish("client_disconnected", 499)


async def _stream_failure(dialect: Dialect, req: RequestAccount, exc: Exception) -> bytes:
    """The error event ending a stream whose status line is sent: a refusal as itself, anything
    else as an internal error; its completion record is written first."""
    if isinstance(exc, Refusal):
        await req.finish(exc.outcome, exc.status, exc.message)
        return dialect.stream_error(exc, req.request_id)
    log.exception("request_id=%s internal error while streaming", req.request_id)
    await req.finish("error", 500, type(exc).__name__)
    return dialect.stream_error(Refusal(500, "error", "internal error"), req.request_id)


async def _closing_events(
    dialect: Dialect, req: RequestAccount, answer: str, outcome: str = "answered"
) -> AsyncIterator[bytes]:
    """A stream's last events: the final one once its completion record is on disk, else the
    error naming the sink."""
    if not await req.finish(outcome, 200):
        yield dialect.stream_error(_audit_failed(req.books.audit), req.request_id)
        return
    for event in dialect.final(req.result(answer, outcome)):
        yield event


async def _checked_stream(
    gw: Gateway,
    dialect: Dialect,
    req: RequestAccount,
    deltas: AsyncIterator[str],
    first: str | None,
) -> AsyncIterator[bytes]:
    """An ``enforce`` stream: the quotes first (verbatim source text), then, once the whole
    answer is generated and checked, its verified summary or the line saying none could be
    composed; no generated byte leaves unchecked. The final event follows the completion record."""
    preface = grounding.quotes_preface(req.quotes)
    parts = [first] if first is not None else []
    try:
        if preface:
            yield dialect.delta(preface, True, req.request_id)
        try:
            parts += [d async for d in deltas]
        except Exception as exc:  # Triton failed mid-answer: the status line is already sent
            yield await _stream_failure(dialect, req, exc)
            return
        checked = await gw.ground(req, "".join(parts).strip())
        if preface:
            tail = (
                grounding.UNVERIFIED_LINE if req.grounding and req.grounding.replaced else checked
            )
            answer = f"{preface}\n\n{tail}"
        else:
            tail = answer = checked
        yield dialect.delta(("\n\n" if preface else "") + tail, not preface, req.request_id)
        async for event in _closing_events(dialect, req, answer):
            yield event
    finally:
        with anyio.CancelScope(shield=True):
            await req.finish("client_disconnected", 499)
            with contextlib.suppress(Exception):
                await deltas.aclose()  # type: ignore[attr-defined]


async def _answer_stream(
    gw: Gateway,
    dialect: Dialect,
    req: RequestAccount,
    deltas: AsyncIterator[str],
    first: str | None,
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
        except Exception as exc:  # Triton failed mid-stream: the status line is already sent
            yield await _stream_failure(dialect, req, exc)
            return
        answer = "".join(parts).strip()
        await gw.ground(req, answer)  # report: the text went out as generated; scored here
        # on disk before the caller sees the final event
        async for event in _closing_events(dialect, req, answer):
            yield event
    finally:
        with anyio.CancelScope(shield=True):
            await req.finish("client_disconnected", 499)
            with contextlib.suppress(Exception):
                await deltas.aclose()  # type: ignore[attr-defined]


def takes_option(llm: LLMClient, name: str) -> bool:
    """Whether the LLM client's ``stream`` names ``name`` (test doubles take fewer options)."""
    try:
        return name in inspect.signature(llm.stream).parameters
    except (TypeError, ValueError):
        return False
