"""Filtered top-k search latency on LanceDB with the ACL prefilter, and ANN recall.

100,000 synthetic chunks x 384 dims (clustered unit vectors, like sentence embeddings of a
corpus with topics), each with an ACL list drawn like a policy corpus (most chunks readable by
all-employees, the rest by one or two restricted groups). The query runs exactly as the gateway
does it: ``ChunkIndex.search(vector, groups, top_k)``, i.e. ``array_has_any(acl, [...])`` as a
prefilter inside the vector search. Three configurations, on the same table:

1. no index (flat scan of the vectors that pass the filter);
2. a LABEL_LIST scalar index on ``acl``;
3. that plus the IVF_FLAT vector index ``ChunkIndex`` builds, reported with recall@k against exact search
   (``bypass_vector_index``) on the same queries and filter.

Below ``VECTOR_INDEX_MIN_ROWS`` (e.g. ``--rows 2000 --skip-ann``) it also times the in-memory
search ``ChunkIndex`` uses for small indexes, and checks it returns LanceDB's exact results.

Goal: p95 <= 20 ms on 2 cores.

    PYTHONPATH=. python benchmarks/retrieval_search.py [--rows 100000] [--queries 200] [--top-k 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llmctl.retrieval.index import VECTOR_INDEX_MIN_ROWS, ChunkIndex, rows_to_table

DIM = 384
RESTRICTED = ["hr-admins", "finance", "security", "compliance", "legal", "treasury"]


def make_data(rows: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(rows // 100, 1), DIM)).astype(np.float32)
    assign = rng.integers(0, len(centers), rows)
    vectors = centers[assign] + 0.6 * rng.normal(size=(rows, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = []
    for i in range(rows):
        r = rng.random()
        if r < 0.7:
            acl = ["all-employees"]
        elif r < 0.95:
            acl = [RESTRICTED[int(rng.integers(len(RESTRICTED)))]]
        else:
            acl = list(rng.choice(RESTRICTED, 2, replace=False))
        doc = i // 8
        meta.append(
            {
                "chunk_id": f"doc{doc}#{i % 8}",
                "doc_id": f"doc{doc}",
                "source": "bench",
                "title": f"Document {doc}",
                "path": f"bench/doc{doc}.md",
                "heading": "Section",
                "chunk_index": i % 8,
                "chunk_hash": f"{i:064x}",
                "doc_hash": f"{doc:064x}",
                "text": f"synthetic chunk {i}",
                "acl": acl,
            }
        )
    return meta, vectors


def queries(vectors: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Questions near stored chunks: a unit vector plus noise of norm ~0.3 (cosine ~0.95).

    The noise is scaled by 1/sqrt(DIM): per-dimension noise of 0.3 on a unit vector would have a
    norm of ~6 and make every query a random direction, with no true neighbours to find.
    """
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(n, DIM)).astype(np.float32) * (0.3 / np.sqrt(DIM))
    q = vectors[rng.integers(0, len(vectors), n)] + noise
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def timed(
    index: ChunkIndex, qs: np.ndarray, groups: list[str], k: int, **kw: object
) -> tuple[list[float], list[list[str]]]:
    for q in qs[:3]:  # warm caches
        index.search(q, groups, k, **kw)  # type: ignore[arg-type]
    times, results = [], []
    for q in qs:
        t0 = time.perf_counter()
        hits = index.search(q, groups, k, **kw)  # type: ignore[arg-type]
        times.append((time.perf_counter() - t0) * 1000)
        results.append([h.chunk_id for h in hits])
    return times, results


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def report(label: str, times: list[float]) -> None:
    print(
        f"{label:<38} p50 {pct(times, 50):8.1f} ms   p95 {pct(times, 95):8.1f} ms   "
        f"mean {statistics.fmean(times):8.1f} ms   (n={len(times)})"
    )


def recall(approx: list[list[str]], exact: list[list[str]]) -> float:
    got = sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True))
    return got / max(1, sum(len(e) for e in exact))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--flat-queries", type=int, default=40, help="queries for the unindexed run")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--groups", default="all-employees,hr-admins")
    ap.add_argument("--dir", type=Path, default=None, help="keep the table here")
    ap.add_argument("--skip-ann", action="store_true", help="no vector index (saves the build)")
    args = ap.parse_args()
    groups = args.groups.split(",")

    tmp = Path(tempfile.mkdtemp(prefix="llmctl-bench-idx-")) if args.dir is None else args.dir
    try:
        t0 = time.perf_counter()
        meta, vectors = make_data(args.rows)
        index = ChunkIndex.create(tmp, DIM)
        for start in range(0, args.rows, 20_000):
            part = slice(start, start + 20_000)
            index.add(rows_to_table(meta[part], vectors[part], DIM))
        print(
            f"{args.rows} x {DIM} chunks written in {time.perf_counter() - t0:.1f} s; "
            f"filter groups {groups}, top-{args.top_k}"
        )
        readable = sum(1 for m in meta if set(m["acl"]) & set(groups))
        print(f"chunks readable by the caller: {readable} ({readable / args.rows:.0%})")
        qs = queries(vectors, args.queries)

        times, exact_flat = timed(index, qs[: args.flat_queries], groups, args.top_k, exact=True)
        report("no index (exact)", times)
        if args.rows < VECTOR_INDEX_MIN_ROWS:
            reader = ChunkIndex.open(tmp)  # opened as the gateway opens it
            times, resident = timed(reader, qs[: args.flat_queries], groups, args.top_k)
            report("in memory (as the gateway)", times)
            assert resident == exact_flat, "the in-memory search differs from LanceDB's"

        t0 = time.perf_counter()
        index.ensure_indexes(scalar_min_rows=1, vector_min_rows=10**12)
        print(f"LABEL_LIST index on acl built in {time.perf_counter() - t0:.1f} s")
        times, exact = timed(index, qs, groups, args.top_k, exact=True)
        report("LABEL_LIST acl (exact)", times)
        assert exact[: args.flat_queries] == exact_flat, "the scalar index changed the results"

        if args.skip_ann:
            return
        t0 = time.perf_counter()
        index.ensure_indexes(scalar_min_rows=1, vector_min_rows=1)
        print(f"IVF_FLAT vector index built in {time.perf_counter() - t0:.1f} s")
        reader = ChunkIndex.open(tmp)  # opened as the gateway opens it
        for label, kw in [
            ("+ IVF_FLAT (defaults, as the gateway)", {}),
            ("+ IVF_FLAT nprobes=10", {"nprobes": 10}),
            ("+ IVF_FLAT nprobes=40", {"nprobes": 40}),
        ]:
            times, approx = timed(reader, qs, groups, args.top_k, **kw)
            report(label, times)
            print(f"{'':<38} recall@{args.top_k} vs exact: {recall(approx, exact):.3f}")
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
