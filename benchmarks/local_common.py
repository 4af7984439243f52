"""Shared set-up for the local-target benchmarks: a stack of their own, the same settings both ways."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from llmctl.local.spec import (
    EmbedderSpec,
    LlmSpec,
    LocalStackSpec,
    default_embedding_model,
    default_gguf,
    default_threads,
)
from llmctl.targets.local import LocalTarget


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads per model")
    parser.add_argument(
        "--grpc", default=None, help="use a running stack at this Triton gRPC address instead"
    )
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: SmolLM2)")
    return parser


def bench_spec(threads: int, gguf: Path | None = None, embedder: bool = True) -> LocalStackSpec:
    return LocalStackSpec(
        name="bench",
        llm=LlmSpec(gguf=gguf or default_gguf(), context_tokens=2048, threads=threads),
        embedder=EmbedderSpec(model_path=default_embedding_model(), threads=threads)
        if embedder
        else None,
    )


@contextlib.contextmanager
def running_stack(
    spec: LocalStackSpec, given: str | None, endpoint: str = "triton_grpc"
) -> Iterator[str]:
    """Yield a Triton address (``endpoint`` of ``LocalTarget.endpoints()``): the given one, or
    that of a private stack started (and stopped) here."""
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="llmctl-bench-") as tmp:
        home = Path(tmp) / "home"
        cache = Path(os.environ.get("LLMCTL_CACHE") or Path(tmp) / "cache")
        target = LocalTarget(spec, home=home, cache=cache)
        try:
            target.apply(smoke=False)
            yield target.endpoints()[endpoint]
        finally:
            target.destroy()
