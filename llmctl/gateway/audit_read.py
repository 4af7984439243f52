"""``GET /v1/audit/records``: the audit trail read over HTTP, for the blueprint's auditor group only.

Why an endpoint: a deployed gateway's audit sink is a volume inside the cluster, and the one who
must check it (``llmctl verify`` in CI, an auditor) has no shell there. So the gateway serves its
own completion records (a streamed answer's ``stage: intent`` record is left out; its completion
follows), by request id (``?request_id=A&request_id=B``, at most ``MAX_IDS``) or by time window
(``?since=ISO&until=ISO``), at most ``limit`` records (``truncated`` says when more matched).

The read takes the same path as every request: authenticated (401), rate-limited per subject in a
bucket of its own (429), allowed only to members of ``audit.auditor_group`` (403; nobody when the
blueprint names none), and itself audited, one record like every request, durable before the
records are sent (503 when the sink cannot take it). Every error is JSON with an honest status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llmctl.gateway.accounting import RequestAccount, audit_refusal
from llmctl.gateway.audit import AuditUnavailable, iter_trail
from llmctl.gateway.dialects import AskDialect
from llmctl.gateway.pipeline import Gateway
from llmctl.gateway.protocol import Refusal
from llmctl.gateway.resilience import retry_after

log = logging.getLogger("llmctl.gateway")

AUDIT_PATH = "/v1/audit/records"  # as llmctl.gateway.client.AUDIT_PATH
MAX_IDS = 200  # request ids per call (a URL stays well under uvicorn's header limit)
MAX_LIMIT = 5000  # records per call


def register_audit_read(app: FastAPI, gw: Gateway) -> None:
    """Add ``GET /v1/audit/records`` to ``app`` (see the module docstring)."""
    dialect = AskDialect()

    @app.get(AUDIT_PATH)
    async def audit_records(request: Request) -> JSONResponse:
        return await serve_audit_read(gw, request, dialect)


async def serve_audit_read(gw: Gateway, request: Request, dialect: AskDialect) -> JSONResponse:
    """One audit read: every path ends in exactly one audit record of its own."""
    req = RequestAccount.start(gw, AUDIT_PATH)
    headers = {"X-Request-ID": req.request_id, "Cache-Control": "no-store"}
    try:
        await gw.authenticate(req, request)
        _authorize(gw, req, request)
        ids, since, until, limit = _query(request)
        found = await anyio.to_thread.run_sync(
            lambda: select_records(iter_trail(gw.config.audit.path), ids, since, until, limit),
            limiter=gw.pools.audit_read,
        )
        if not await req.finish("audit_read", 200):
            raise audit_refusal(AuditUnavailable(gw.audit.failing or f"audit sink {gw.audit.path}"))
        body = {
            "records": found[:limit],
            "count": min(len(found), limit),
            "truncated": len(found) > limit,
            "request_id": req.request_id,
        }
        return JSONResponse(body, headers=headers)
    except Refusal as refusal:
        if refusal.outcome == "audit_unavailable":
            req.recorded = False
        await req.finish(refusal.outcome, refusal.status, refusal.message)
        return JSONResponse(
            dialect.error_body(refusal, req.request_id),
            status_code=refusal.status,
            headers={**headers, **refusal.headers},
        )
    except Exception as exc:
        log.exception("request_id=%s audit read failed", req.request_id)
        await req.finish("error", 500, type(exc).__name__)
        internal = Refusal(500, "error", "internal error reading the audit trail")
        return JSONResponse(
            dialect.error_body(internal, req.request_id), status_code=500, headers=headers
        )


def _authorize(gw: Gateway, req: RequestAccount, request: Request) -> None:
    """Rate limit (its own bucket per subject), then the auditor group."""
    assert req.principal is not None
    allowed, wait = gw.limiter.acquire(f"audit-read:{req.principal.subject}")
    if not allowed:
        raise Refusal(
            429,
            "rate_limited",
            "audit read rate limit exceeded",
            {"Retry-After": retry_after(wait)},
        )
    group = gw.config.audit.auditor_group
    if not group:
        raise Refusal(
            403,
            "forbidden",
            "audit records are not readable here: the blueprint names no "
            "requirements.audit.auditorGroup",
        )
    if req.principal.anonymous or group not in req.principal.groups:
        raise Refusal(403, "forbidden", f"audit records are readable by group {group!r} only")


def _query(request: Request) -> tuple[set[str], datetime | None, datetime | None, int]:
    """The request ids, the window and the limit, or a 400 saying what is wrong."""
    q = request.query_params
    unknown = sorted(set(q.keys()) - {"request_id", "since", "until", "limit"})
    if unknown:
        raise Refusal(400, "bad_request", f"unknown query parameter(s): {', '.join(unknown)}")
    ids = {i for i in q.getlist("request_id") if i}
    if len(ids) > MAX_IDS:
        raise Refusal(400, "bad_request", f"at most {MAX_IDS} request_id values per call")
    since, until = _time(q.get("since"), "since"), _time(q.get("until"), "until")
    if not ids and since is None:
        raise Refusal(
            400, "bad_request", "name the records: request_id=ID (repeatable) or since=ISO-8601"
        )
    raw = q.get("limit") or str(MAX_LIMIT)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Refusal(400, "bad_request", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return ids, since, until, int(raw)


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(value)
    except ValueError:
        raise Refusal(
            400, "bad_request", f"{name} must be an ISO-8601 time, e.g. 2026-01-31T12:00:00Z"
        ) from None


def as_utc(value: str) -> datetime:
    """An ISO-8601 time as an aware UTC datetime (naive times are taken as UTC)."""
    t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def select_records(
    records: Iterable[dict[str, Any]],
    ids: set[str],
    since: datetime | None,
    until: datetime | None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Completion records (no ``stage: intent``) with one of ``ids`` and within the window;
    with ``limit``, the scan stops at ``limit + 1`` matches (enough to say ``truncated``)."""
    out: list[dict[str, Any]] = []
    for rec in records:
        if limit is not None and len(out) > limit:
            break
        if rec.get("stage") == "intent":
            continue
        if ids and str(rec.get("request_id")) not in ids:
            continue
        if since is not None or until is not None:
            try:
                t = as_utc(str(rec.get("time")))
            except ValueError:
                continue
            if (since is not None and t < since) or (until is not None and t > until):
                continue
        out.append(rec)
    return out
