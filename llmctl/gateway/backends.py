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
from typing import Any, Protocol

from llmctl.errors import BackendTimeout, BackendUnavailable
from llmctl.triton_client import TritonLLM

__all__ = ["BackendTimeout", "BackendUnavailable", "IndexRetriever", "LLMClient", "TritonLLM"]


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
