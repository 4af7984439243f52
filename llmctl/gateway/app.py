"""The gateway's HTTP API: ``POST /v1/ask``, OpenAI-compatible ``POST /v1/chat/completions``,
``/healthz``, ``/readyz`` and ``/metrics``.

This module assembles the app: the collaborators (auth, rate limiter, audit log, Triton, the
index) built from the config, the routes and the shutdown. What happens to one request is in
``llmctl.gateway.pipeline``; the wire formats are in ``llmctl.gateway.protocol`` and
``llmctl.gateway.dialects``; per-request audit and metrics in ``llmctl.gateway.accounting``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmctl.gateway.audit import AuditLog
from llmctl.gateway.audit_archive import capacity_problem
from llmctl.gateway.audit_read import register_audit_read
from llmctl.gateway.auth import Authenticator
from llmctl.gateway.backends import BackendUnavailable, LLMClient, Retriever, TritonLLM
from llmctl.gateway.config import GatewayConfig, GatewayConfigError
from llmctl.gateway.dialects import AskDialect, OpenAIDialect
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.pipeline import Gateway, serve
from llmctl.gateway.prompt import PLAIN_FRAME, ChatFrame
from llmctl.gateway.questionkeys import ring_source
from llmctl.gateway.ratelimit import TokenBucketLimiter
from llmctl.gateway.resilience import Check, Readiness
from llmctl.gateway.tokens import load_token_counter


def build_gateway(
    config: GatewayConfig,
    *,
    retriever: Retriever | None = None,
    llm: LLMClient | None = None,
    authenticator: Authenticator | None = None,
    audit: AuditLog | None = None,
) -> Gateway:
    """The app's state; collaborators not given are the real ones built from ``config``."""
    ring_source(config.audit.question_key_path)  # a missing or broken ring fails the start
    metrics = GatewayMetrics()
    auth = authenticator or Authenticator(config.auth)
    limiter = TokenBucketLimiter(config.rate_limit.requests_per_minute, config.rate_limit.burst)
    audit = audit or open_audit(config)
    lim = config.limits
    llm = llm or TritonLLM(
        config.triton_url,
        config.llm_model,
        protocol=config.llm_protocol,
        connect_timeout_s=lim.triton_connect_timeout_s,
        token_timeout_s=max(lim.triton_first_token_timeout_s, lim.triton_token_timeout_s),
    )
    retriever = retriever or default_retriever(config)
    frame = (
        ChatFrame.from_template(config.chat_template)
        if config.prompt_format == "chat"
        else PLAIN_FRAME
    )
    # Loaded once: prompts are sized in the served model's tokens (a bad path fails the start).
    tokens = load_token_counter(config.tokenizer, chars_per_token=lim.chars_per_token)
    return Gateway(config, metrics, auth, limiter, audit, llm, retriever, frame, tokens)


def open_audit(config: GatewayConfig) -> AuditLog:
    """The audit trail the config names; refuses (one line) a sink that cannot be opened or
    cannot hold what the blueprint's retention requires at its expected traffic."""
    a = config.audit
    problem = capacity_problem(Path(a.path), a.retention_days, a.records_per_day)
    if problem:
        raise GatewayConfigError(problem)
    try:
        return AuditLog(
            a.path,
            max_bytes=a.max_bytes,
            backups=a.backups,
            fsync=a.fsync or a.required,  # "durable" means on disk when audit is required
            retention_days=a.retention_days,
        )
    except OSError as exc:
        raise GatewayConfigError(
            f"audit sink {a.path}: {exc.strerror or exc}; make it writable and start again"
        ) from exc


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


def _index_check(gw: Gateway) -> Check:
    """The retriever's readiness without parking a thread when it can (``aready``)."""
    aready = getattr(gw.retriever, "aready", None)
    if aready is not None:
        return aready  # type: ignore[no-any-return]

    async def check() -> tuple[bool, str]:
        return await anyio.to_thread.run_sync(gw.retriever.ready, limiter=gw.pools.probe)

    return check


def _audit_check(gw: Gateway) -> Check:
    """The audit sink takes records (only a failing sink with audit required is not ready)."""

    async def check() -> tuple[bool, str]:
        ok, detail = await anyio.to_thread.run_sync(gw.audit.probe, limiter=gw.pools.audit)
        gw.metrics.audit_sink_up.set(int(ok))
        if ok or not gw.config.audit.required:
            return True, ""
        return False, detail

    return check


def create_app(
    config: GatewayConfig,
    *,
    retriever: Retriever | None = None,
    llm: LLMClient | None = None,
    authenticator: Authenticator | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """Build the gateway app. Collaborators default to the real ones built from ``config``."""
    gw = build_gateway(
        config, retriever=retriever, llm=llm, authenticator=authenticator, audit=audit
    )
    ask_dialect, chat_dialect = AskDialect(), OpenAIDialect(config.blueprint_name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await gw.breaker.aclose()
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

    readiness = Readiness(
        {"llm": gw.llm.ready, "index": _index_check(gw), "audit": _audit_check(gw)},
        timeout_s=config.limits.readiness_timeout_s,
    )

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, details = await readiness.check()
        body = {"status": "ready" if ok else "not ready", **details}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        if not config.metrics:
            return PlainTextResponse("metrics disabled\n", status_code=404)
        updated = getattr(gw.retriever, "index_updated_at", None)
        if isinstance(updated, float):
            gw.metrics.index_updated.set(updated)
        return Response(generate_latest(gw.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The routes take the raw Request on purpose: the body is read only after auth and rate
    # limit, under the size limit, and validated by the dialect's model (see protocol.py).
    @app.post("/v1/ask")
    async def ask(request: Request) -> Response:
        return await serve(gw, request, ask_dialect)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await serve(gw, request, chat_dialect)

    register_audit_read(app, gw)  # GET /v1/audit/records, for the auditor group
    return app
