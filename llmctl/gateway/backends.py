"""The gateway's two seams: a ``Retriever`` (question + caller's groups → hits) and an
``LLMClient`` (prompt → streamed text deltas).

Why protocols: the gateway is the same code against the local stack (Triton on CPU, LanceDB on
disk) and production (Triton with TensorRT-LLM, the index on a volume); tests and the overhead
benchmark plug in the real things through the same two small interfaces.

``TritonLLM`` speaks Triton's HTTP generate extension (``POST /v2/models/<m>/generate_stream``,
server-sent events) with httpx's async client: the gateway's event loop serves many concurrent
streams without a thread each, and a stopped Triton fails at connect time (refused) in
milliseconds, which the app turns into a 503.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import httpx


class BackendUnavailable(Exception):
    """Triton or the index cannot serve right now (→ 503). The message names the component only."""


class BackendTimeout(Exception):
    """Triton or the index did not answer within its timeout (→ 504)."""


class Retriever(Protocol):
    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        """Hits readable by ``groups`` only (the ACL is a prefilter inside the search). Blocking."""
        ...

    def ready(self) -> tuple[bool, str]: ...


class LLMClient(Protocol):
    def stream(
        self, prompt: str, *, max_tokens: int, stop_words: Sequence[str], temperature: float
    ) -> AsyncIterator[str]:
        """Yield text deltas; raise BackendUnavailable / BackendTimeout."""
        ...

    async def ready(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...


class TritonLLM:
    """Streaming generation through Triton's HTTP generate extension."""

    def __init__(
        self,
        base_url: str,
        model: str = "ensemble",
        *,
        connect_timeout_s: float = 2.0,
        token_timeout_s: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(token_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        payload: dict[str, Any] = {
            "text_input": prompt,
            "max_tokens": int(max_tokens),
            "stream": True,
            "temperature": float(temperature),
        }
        if stop_words:
            payload["stop_words"] = list(stop_words)
        url = f"/v2/models/{self.model}/generate_stream"
        try:
            async with self._client.stream("POST", url, json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode("utf-8", "replace")
                    kind = BackendUnavailable if response.status_code >= 500 else RuntimeError
                    raise kind(f"triton {self.model}: HTTP {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:].strip() or "{}")
                    if "error" in event:
                        raise BackendUnavailable(f"triton {self.model}: {event['error']}")
                    delta = event.get("text_output")
                    if isinstance(delta, list):
                        delta = "".join(str(x) for x in delta)
                    if delta:
                        yield str(delta)
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"triton {self.model}: no answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"triton {self.model}: {type(exc).__name__}: {exc}") from exc

    async def ready(self) -> tuple[bool, str]:
        try:
            r = await self._client.get("/v2/health/ready", timeout=2.0)
            if r.status_code != 200:
                return False, f"triton not ready (HTTP {r.status_code})"
            r = await self._client.get(f"/v2/models/{self.model}/ready", timeout=2.0)
            if r.status_code != 200:
                return False, f"triton model {self.model} not ready (HTTP {r.status_code})"
        except httpx.HTTPError as exc:
            return False, f"triton unreachable at {self.base_url} ({type(exc).__name__})"
        return True, ""

    async def aclose(self) -> None:
        await self._client.aclose()


class IndexRetriever:
    """Embeds the question and searches the index with the caller's groups as the prefilter.

    ``embedder`` has ``embed(texts) -> vectors``; ``index`` has ``search(vector, groups, top_k)``
    (both from ``llmctl.retrieval``). Opening is lazy and retried, so a gateway started before
    the index exists becomes ready once it does instead of needing a restart.
    """

    def __init__(self, open_index: Any, embedder: Any) -> None:
        self._open_index = open_index
        self._embedder = embedder
        self._index: Any = None
        self._lock = threading.Lock()
        self.index_hash = ""  # the opened index's own content hash (manifest), stamped on answers

    def _get_index(self) -> Any:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    try:
                        index = self._open_index()
                        self.index_hash = str(getattr(index, "index_hash", "") or "")
                        self._index = index
                    except Exception as exc:
                        raise BackendUnavailable(
                            f"index: cannot open ({type(exc).__name__}: {exc})"
                        ) from exc
        return self._index

    async def asearch(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        """``search`` for the event loop: the question is embedded without a thread when the
        embedder can (``aembed``); opening the index and searching it stay in worker threads."""
        import anyio

        aembed = getattr(self._embedder, "aembed", None)
        if aembed is None:
            return await anyio.to_thread.run_sync(self.search, question, groups, top_k)
        index = self._index or await anyio.to_thread.run_sync(self._get_index)
        try:
            vectors = await aembed([question])
        except Exception as exc:
            raise BackendUnavailable(f"embedder: {type(exc).__name__}: {exc}") from exc
        return list(await anyio.to_thread.run_sync(index.search, vectors[0], list(groups), top_k))

    async def aclose(self) -> None:
        close = getattr(self._embedder, "aclose", None)
        if close is not None:
            await close()

    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        index = self._get_index()
        try:
            vectors = self._embedder.embed([question])
        except Exception as exc:
            raise BackendUnavailable(f"embedder: {type(exc).__name__}: {exc}") from exc
        return list(index.search(vectors[0], list(groups), top_k))

    def ready(self) -> tuple[bool, str]:
        try:
            self._get_index()
        except BackendUnavailable as exc:
            return False, str(exc)
        check = getattr(self._embedder, "ready", None)
        if callable(check):
            try:
                ok = check()
            except Exception as exc:
                return False, f"embedder: {type(exc).__name__}"
            if isinstance(ok, tuple):
                return ok
            if not ok:
                return False, "embedder not ready"
        return True, ""
