"""The smoke test ``up`` runs before it reports success: one streamed generation, one embedding batch.

It goes through the same client helpers as the gateway, so a green ``up`` means the path real
requests take works, not merely that Triton answers its health URL.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llmctl import triton_client
from llmctl.errors import StackError

SMOKE_PROMPT = "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"
SMOKE_TEXTS = (
    "llmctl smoke test",
    "Triton serves embeddings.",
    "A third, longer sentence for batching.",
)


@dataclass(frozen=True)
class SmokeResult:
    generation: str
    deltas: int
    embedding_shape: tuple[int, ...] | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_smoke(
    grpc_url: str, *, llm: bool = True, embedder: bool = True, dimensions: int | None = None
) -> SmokeResult:
    started = time.perf_counter()
    text, deltas = "", 0
    if llm:
        try:
            for delta in triton_client.stream_generate(grpc_url, SMOKE_PROMPT, max_tokens=8):
                text += delta
                deltas += 1
        except StackError as exc:
            raise StackError(f"smoke test: streamed generation failed: {exc}") from exc
        if deltas == 0:
            raise StackError("smoke test: the LLM model (tensorrt_llm) streamed no tokens")
    shape = None
    if embedder:
        vectors = triton_client.embed(grpc_url, list(SMOKE_TEXTS))
        shape = tuple(vectors.shape)
        if vectors.shape[0] != len(SMOKE_TEXTS) or (dimensions and vectors.shape[1] != dimensions):
            raise StackError(f"smoke test: embeddings have shape {shape}")
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise StackError(f"smoke test: embeddings are not unit length (norms {norms})")
    return SmokeResult(text, deltas, shape, time.perf_counter() - started)
