"""The gateway's two seams: a ``Retriever`` (question + caller's groups → hits) and an
``LLMClient`` (prompt → streamed text deltas).

Why protocols: the gateway is the same code against the local stack (Triton on CPU, LanceDB on
disk) and production (Triton with TensorRT-LLM, the index on a volume); tests and the overhead
benchmark plug in the real things through the same two small interfaces.

The ``LLMClient`` in production is ``llmctl.triton_client.TritonLLM`` (Triton's HTTP generate
extension on the gateway's event loop); the retriever embeds through Triton's gRPC endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from llmctl.errors import BackendTimeout, BackendUnavailable
from llmctl.triton_client import TritonLLM

__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "Hits",
    "IndexRetriever",
    "LLMClient",
    "TritonLLM",
]


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


class Hits(list):  # type: ignore[type-arg]
    """Search results that also say which index version produced them (``index_hash``), so
    an answer and its audit record name the documents actually behind it after an ingest."""

    def __init__(self, items: Any = (), index_hash: str = "") -> None:
        super().__init__(items)
        self.index_hash = index_hash


class IndexRetriever:
    """Embeds the question and searches the index with the caller's groups as the prefilter.

    ``embedder`` has ``embed(texts) -> vectors``; ``index`` has ``search(vector, groups, top_k)``
    (both from ``llmctl.retrieval``). Opening is lazy and retried, so a gateway started before
    the index exists becomes ready once it does instead of needing a restart. Index searches
    run in worker threads of their own budget (``threads``), so a slow disk cannot take the
    threads audit writes need.
    """

    def __init__(self, open_index: Any, embedder: Any, *, threads: int = 16) -> None:
        import anyio

        self._open_index = open_index
        self._embedder = embedder
        self._index: Any = None
        self._lock = threading.Lock()
        self._threads = anyio.CapacityLimiter(threads)

    @property
    def index_hash(self) -> str:
        """The opened index's current content hash ('' before it is open)."""
        index = self._index
        return str(getattr(index, "index_hash", "") or "") if index is not None else ""

    @property
    def index_updated_at(self) -> float | None:
        """Unix time of the opened index's last change (its manifest), None before it is open."""
        index = self._index
        manifest = getattr(index, "manifest", None) if index is not None else None
        if manifest is None:
            return None
        stamp = str(manifest().get("updated_at") or "")
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    def _get_index(self) -> Any:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    try:
                        self._index = self._open_index()
                    except Exception as exc:
                        raise BackendUnavailable(
                            f"index: cannot open ({type(exc).__name__}: {exc})"
                        ) from exc
        return self._index

    def _search(self, index: Any, vector: Any, groups: list[str], top_k: int) -> Hits:
        served = getattr(index, "search_served", None)
        if served is not None:
            hits, index_hash = served(vector, groups, top_k)
            return Hits(hits, index_hash)
        return Hits(index.search(vector, groups, top_k), self.index_hash)

    async def asearch(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        """``search`` for the event loop: the question is embedded without a thread when the
        embedder can (``aembed``); opening the index and searching it stay in worker threads."""
        import anyio

        aembed = getattr(self._embedder, "aembed", None)
        if aembed is None:
            return await anyio.to_thread.run_sync(
                self.search, question, groups, top_k, limiter=self._threads
            )
        index = self._index or await anyio.to_thread.run_sync(
            self._get_index, limiter=self._threads, abandon_on_cancel=True
        )
        try:
            vectors = await aembed([question])
        except BackendTimeout:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"embedder: {type(exc).__name__}: {exc}") from exc
        # abandonable: past the request's deadline it gets its 504 while the thread finishes
        return await anyio.to_thread.run_sync(
            self._search,
            index,
            vectors[0],
            list(groups),
            top_k,
            limiter=self._threads,
            abandon_on_cancel=True,
        )

    async def aclose(self) -> None:
        close = getattr(self._embedder, "aclose", None)
        if close is not None:
            await close()

    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        index = self._get_index()
        try:
            vectors = self._embedder.embed([question])
        except BackendTimeout:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"embedder: {type(exc).__name__}: {exc}") from exc
        return self._search(index, vectors[0], list(groups), top_k)

    async def aready(self) -> tuple[bool, str]:
        """Readiness without a parked thread: the index opened (once, in a worker of this
        retriever's budget) and the embedder's own async check, both under the caller's
        deadline (``llmctl.gateway.resilience.Readiness``)."""
        import anyio

        try:
            await anyio.to_thread.run_sync(self._get_index, limiter=self._threads)
        except BackendUnavailable as exc:
            return False, str(exc)
        check = getattr(self._embedder, "aready", None)
        if check is not None:
            return tuple(await check())  # type: ignore[return-value]
        return await anyio.to_thread.run_sync(self.ready, limiter=self._threads)

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
