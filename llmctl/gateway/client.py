"""A small client of the gateway's HTTP API, over httpx.

Why one client: the CLI (``llmctl ask``), the benchmarks, the gates and the load test each built
gateway requests and cut SSE streams apart by hand; here the paths, the bearer header, the bodies
and the SSE parsing live in one place. Every call answers a ``GatewayResponse`` (HTTP status and
parsed JSON body, whatever the status: a 401 or a 503 is the gateway's answer, for the caller to
judge) and raises ``LlmctlError``, one line, only when the gateway cannot be reached or the
connection breaks (refused, timed out, reset).

Streams: ``stream_ask`` / ``stream_chat`` yield ``SseEvent``s as they arrive (what TTFT and
inter-token measurements need); ``ask(..., stream=True)`` reads the whole stream and answers its
closing event as the body, the shape of a non-streamed answer (``final`` for ``/v1/ask``, the last
chunk for the OpenAI endpoint, or the ``error`` event of a stream that failed after its 200).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from llmctl.errors import LlmctlError

ASK_PATH = "/v1/ask"
CHAT_PATH = "/v1/chat/completions"
AUDIT_PATH = "/v1/audit/records"
DEFAULT_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: ``event`` is "delta", "final" or "error" on ``/v1/ask`` and None for
    OpenAI chunks; ``data`` is the parsed JSON, or the raw text where it is not JSON ("[DONE]")."""

    event: str | None
    data: Any

    @property
    def done(self) -> bool:
        return self.data == "[DONE]"


@dataclass(frozen=True)
class GatewayResponse:
    """The gateway's answer: HTTP status, JSON body (``{"error": text}`` when it sent no JSON),
    headers, and for a stream read whole, its events."""

    status: int
    body: dict[str, Any]
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    events: tuple[SseEvent, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")


class SseParser:
    """Incremental SSE parsing, line by line (the gateway's JSON is ASCII-only, one line each)."""

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str | bytes) -> SseEvent | None:
        """Take one line (without its line break); an event when ``line`` completes one."""
        if isinstance(line, bytes):  # e.g. requests' (Locust's) iter_lines
            line = line.decode("utf-8", "replace")
        if not line:
            return self.flush()
        if line.startswith("event:"):
            self._event = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        return None

    def flush(self) -> SseEvent | None:
        """The pending event, if any (the end of the stream ends it too)."""
        event, data = self._event, self._data
        self._event, self._data = None, []
        if not data:
            return None
        raw = "\n".join(data)
        try:
            return SseEvent(event, json.loads(raw))
        except ValueError:
            return SseEvent(event, raw)


def parse_sse(lines: Iterable[str | bytes]) -> Iterator[SseEvent]:
    """The events of a whole SSE text, given as lines."""
    parser = SseParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
    if (event := parser.flush()) is not None:
        yield event


def ask_payload(question: str, top_k: int | None = None, stream: bool = False) -> dict[str, Any]:
    """The body of ``POST /v1/ask`` (``top_k`` left out when None: the gateway's default)."""
    return _options({"question": question}, top_k, stream)


def chat_payload(
    messages: str | Sequence[dict[str, Any]], top_k: int | None = None, stream: bool = False
) -> dict[str, Any]:
    """The body of ``POST /v1/chat/completions``; a string is one user message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return _options({"messages": list(messages)}, top_k, stream)


def _options(payload: dict[str, Any], top_k: int | None, stream: bool) -> dict[str, Any]:
    if top_k is not None:
        payload["top_k"] = top_k
    if stream:
        payload["stream"] = True
    return payload


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"error": response.text[:300]}
    return body if isinstance(body, dict) else {"error": response.text[:300]}


def _closing_body(events: Sequence[SseEvent]) -> dict[str, Any]:
    """The last event with a JSON object: the final result, the last chunk, or the error."""
    for event in reversed(events):
        if isinstance(event.data, dict):
            return event.data
    return {"error": "stream ended without a final event"}


def _unreachable(base_url: str, exc: Exception) -> LlmctlError:
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    return LlmctlError(f"cannot reach the gateway at {base_url}: {detail}")


class EventStream:
    """An open response of a streamed request: status and headers at once, then the events.

    A refused request (401, 503, ...) is not a stream: ``body`` holds its JSON and there are no
    events.
    """

    def __init__(self, response: httpx.Response, base_url: str, body: dict[str, Any]) -> None:
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.body = body
        self._base_url = base_url

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id")

    @property
    def is_stream(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    def __iter__(self) -> Iterator[SseEvent]:
        if not self.is_stream:
            return
        try:
            yield from parse_sse(self.response.iter_lines())
        except httpx.HTTPError as exc:
            raise _unreachable(self._base_url, exc) from exc

    async def __aiter__(self) -> AsyncIterator[SseEvent]:
        if not self.is_stream:
            return
        parser = SseParser()
        try:
            async for line in self.response.aiter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event
        except httpx.HTTPError as exc:
            raise _unreachable(self._base_url, exc) from exc
        if (event := parser.flush()) is not None:
            yield event

    def whole(self, events: Sequence[SseEvent]) -> GatewayResponse:
        """This response as one answer, once its events are read."""
        body = _closing_body(events) if self.is_stream else self.body
        return GatewayResponse(self.status, body, self.headers, tuple(events))


class _Base:
    _http_class: ClassVar[type[httpx.Client] | type[httpx.AsyncClient]]

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        max_connections: int | None = None,  # None: httpx's defaults (100, 20 kept alive)
        transport: Any = None,  # an httpx (async) transport, e.g. to call an app in-process
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        n = max_connections
        self._http: Any = self._http_class(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=n or 100, max_keepalive_connections=n or 20),
            transport=transport,
        )

    def _headers(self, token: str | None) -> dict[str, str]:
        bearer = token or self.token
        return {"Authorization": f"Bearer {bearer}"} if bearer else {}


class GatewayClient(_Base):
    """Blocking client; ``token`` is the default bearer token, each call may pass its own.

    Use it as a context manager (or call ``close``) to release its connections."""

    _http_class = httpx.Client

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> GatewayResponse:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        return GatewayResponse(r.status_code, _body(r), r.headers)

    @contextmanager
    def _stream(
        self, path: str, payload: dict[str, Any], token: str | None
    ) -> Iterator[EventStream]:
        try:
            with self._http.stream(
                "POST", path, json=payload, headers=self._headers(token)
            ) as response:
                stream = EventStream(response, self.base_url, {})
                if not stream.is_stream:
                    response.read()
                    stream.body = _body(response)
                yield stream
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def _answer(self, path: str, payload: dict[str, Any], token: str | None) -> GatewayResponse:
        if payload.get("stream"):
            with self._stream(path, payload, token) as s:
                return s.whole(list(s))
        return self._call("POST", path, json=payload, headers=self._headers(token))

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        stream: bool = False,
        *,
        token: str | None = None,
    ) -> GatewayResponse:
        """``POST /v1/ask``; streamed, the body is the ``final`` (or ``error``) event."""
        return self._answer(ASK_PATH, ask_payload(question, top_k, stream), token)

    def chat(
        self,
        messages: str | Sequence[dict[str, Any]],
        top_k: int | None = None,
        stream: bool = False,
        *,
        token: str | None = None,
    ) -> GatewayResponse:
        """``POST /v1/chat/completions``; streamed, the body is the last chunk (usage, citations)."""
        return self._answer(CHAT_PATH, chat_payload(messages, top_k, stream), token)

    def stream_ask(
        self, question: str, top_k: int | None = None, *, token: str | None = None
    ) -> AbstractContextManager[EventStream]:
        """``POST /v1/ask`` streamed; iterate the result for its events as they arrive."""
        return self._stream(ASK_PATH, ask_payload(question, top_k, stream=True), token)

    def stream_chat(
        self,
        messages: str | Sequence[dict[str, Any]],
        top_k: int | None = None,
        *,
        token: str | None = None,
    ) -> AbstractContextManager[EventStream]:
        """``POST /v1/chat/completions`` streamed; iterate the result for its chunks."""
        return self._stream(CHAT_PATH, chat_payload(messages, top_k, stream=True), token)

    def healthz(self) -> GatewayResponse:
        return self._call("GET", "/healthz")

    def readyz(self) -> GatewayResponse:
        """200 when Triton and the index are ready, else 503 with what is not."""
        return self._call("GET", "/readyz")

    def audit_records(
        self, request_ids: Sequence[str] = (), *, since: str | None = None, token: str | None = None
    ) -> GatewayResponse:
        """``GET /v1/audit/records`` (auditor group only): completion records by id or since."""
        params = [("request_id", i) for i in request_ids] + ([("since", since)] if since else [])
        return self._call("GET", AUDIT_PATH, params=params, headers=self._headers(token))


class AsyncGatewayClient(_Base):
    """The same client for asyncio callers (many concurrent requests from one thread)."""

    _http_class = httpx.AsyncClient

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kw: Any) -> GatewayResponse:
        try:
            r = await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc
        return GatewayResponse(r.status_code, _body(r), r.headers)

    @asynccontextmanager
    async def _stream(
        self, path: str, payload: dict[str, Any], token: str | None
    ) -> AsyncIterator[EventStream]:
        try:
            async with self._http.stream(
                "POST", path, json=payload, headers=self._headers(token)
            ) as response:
                stream = EventStream(response, self.base_url, {})
                if not stream.is_stream:
                    await response.aread()
                    stream.body = _body(response)
                yield stream
        except httpx.HTTPError as exc:
            raise _unreachable(self.base_url, exc) from exc

    async def _answer(
        self, path: str, payload: dict[str, Any], token: str | None
    ) -> GatewayResponse:
        if payload.get("stream"):
            async with self._stream(path, payload, token) as s:
                return s.whole([e async for e in s])
        return await self._call("POST", path, json=payload, headers=self._headers(token))

    async def ask(
        self,
        question: str,
        top_k: int | None = None,
        stream: bool = False,
        *,
        token: str | None = None,
    ) -> GatewayResponse:
        """``POST /v1/ask``; streamed, the body is the ``final`` (or ``error``) event."""
        return await self._answer(ASK_PATH, ask_payload(question, top_k, stream), token)

    async def chat(
        self,
        messages: str | Sequence[dict[str, Any]],
        top_k: int | None = None,
        stream: bool = False,
        *,
        token: str | None = None,
    ) -> GatewayResponse:
        """``POST /v1/chat/completions``; streamed, the body is the last chunk."""
        return await self._answer(CHAT_PATH, chat_payload(messages, top_k, stream), token)

    def stream_ask(
        self, question: str, top_k: int | None = None, *, token: str | None = None
    ) -> AbstractAsyncContextManager[EventStream]:
        """``POST /v1/ask`` streamed; ``async for`` over the result for its events."""
        return self._stream(ASK_PATH, ask_payload(question, top_k, stream=True), token)

    async def healthz(self) -> GatewayResponse:
        return await self._call("GET", "/healthz")

    async def readyz(self) -> GatewayResponse:
        return await self._call("GET", "/readyz")
