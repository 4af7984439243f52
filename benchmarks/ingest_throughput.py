"""Ingestion throughput vs the embedder's raw throughput on the same chunks.

Embedding is the expensive step; everything else ingestion does (reading, validating, chunking,
hashing, Arrow conversion, the LanceDB write, the index hash) should cost little next to it.
This measures both on the same chunk texts and reports the ratio. Goal: >= 90%.

The corpus is the example ``blueprints/corpora/hr-policy`` copied ``--copies`` times (each copy
made distinct so the duplicate check keeps it).

    PYTHONPATH=. python benchmarks/ingest_throughput.py --embedder inprocess [--copies 4]
    PYTHONPATH=. python benchmarks/ingest_throughput.py --embedder triton [--grpc 127.0.0.1:8001]
    PYTHONPATH=. python benchmarks/ingest_throughput.py --embedder hashing   # overhead only

``--embedder triton`` without ``--grpc`` starts a private local stack (Triton with the embedder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "blueprints" / "corpora" / "hr-policy"


def make_corpus(dest: Path, copies: int) -> Path:
    for i in range(copies):
        target = dest / f"copy{i}"
        shutil.copytree(CORPUS, target)
        for p in target.rglob("*"):
            if p.suffix in (".md", ".txt"):
                p.write_text(
                    p.read_text(encoding="utf-8") + f"\n\nRevision note {i}.\n", encoding="utf-8"
                )
    return dest


@contextlib.contextmanager
def make_embedder(kind: str, grpc: str | None, threads: int) -> Iterator[object]:
    from llmctl.retrieval import embedders

    if kind == "hashing":
        yield embedders.HashingEmbedder()
    elif kind == "inprocess":
        yield embedders.InProcessEmbedder(threads=threads)
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from local_common import bench_spec, running_stack

        with running_stack(bench_spec(threads, embedder=True), grpc) as url:
            emb = embedders.TritonEmbedder(url)
            try:
                yield emb
            finally:
                emb.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedder", choices=["inprocess", "triton", "hashing"], default="inprocess")
    ap.add_argument("--grpc", default=None, help="Triton gRPC address of a running stack")
    ap.add_argument("--copies", type=int, default=2, help="copies of the example corpus")
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256, help="texts per embed() call, as ingest")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from llmctl.retrieval.chunking import chunk_document, default_tokenizer
    from llmctl.retrieval.documents import SourceSpec, read_sources
    from llmctl.retrieval.ingest import ingest_documents

    tmp = Path(tempfile.mkdtemp(prefix="llmctl-bench-ingest-"))
    try:
        root = make_corpus(tmp / "corpus", args.copies)
        source = SourceSpec("hr-policy", root, sensitivity="confidential")
        tok = default_tokenizer()
        read = read_sources([source])
        texts = [
            c.embed_text
            for d in read.documents
            for c in chunk_document(d, tok, tokens=args.tokens, overlap=args.overlap)
        ]
        print(f"{len(read.documents)} documents, {len(texts)} chunks, tokenizer {tok.name}")

        # Import the index engine before timing, as the embedder is warmed up before its run:
        # both are once-per-process costs, not throughput (printed so they are not hidden).
        t0 = time.perf_counter()
        os.environ.setdefault("LANCEDB_LOG", "error")  # as ChunkIndex does before its import
        import lancedb  # noqa: F401

        print(f"importing lancedb (once per process): {time.perf_counter() - t0:.2f} s")
        with make_embedder(args.embedder, args.grpc, args.threads) as emb:
            emb.embed(texts[:16])  # load / warm up
            t0 = time.perf_counter()
            for start in range(0, len(texts), args.batch):
                emb.embed(texts[start : start + args.batch])
            raw_s = time.perf_counter() - t0
            raw = len(texts) / raw_s
            print(f"embedder alone ({args.embedder}): {raw:8.1f} chunks/s ({raw_s:.2f} s)")

            def run_ingest() -> Any:
                """Ingestion as `llmctl ingest` runs it: reading and validating included."""
                return ingest_documents(
                    read_sources([source]),
                    emb,
                    tmp / "index",
                    tokens=args.tokens,
                    overlap=args.overlap,
                    tokenizer=tok,
                    embed_batch=args.batch,
                )

            t0 = time.perf_counter()
            report = run_ingest()
            ing_s = time.perf_counter() - t0
            assert report.chunks_embedded == len(texts), (report.chunks_embedded, len(texts))
            ing = report.chunks_embedded / ing_s
            print(
                f"ingest end to end:       {ing:8.1f} chunks/s ({ing_s:.2f} s, of which "
                f"embedding {report.embed_seconds:.2f} s)"
            )
            print(f"ratio ingest / embedder: {ing / raw:.1%} (goal >= 90%)")

            t0 = time.perf_counter()
            again = run_ingest()
            print(
                f"re-ingest, nothing changed: {time.perf_counter() - t0:.2f} s, "
                f"{len(again.unchanged)} unchanged, {again.chunks_embedded} embedded"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
