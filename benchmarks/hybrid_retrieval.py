"""Hybrid retrieval (LanceDB full-text BM25 + vector, reciprocal rank fusion) against vector-only
search, on the evaluation sets, before hybrid may become a default.

Both searches run under the same ACL prefilter (``array_has_any(acl, [...])``, ``prefilter=True``
for the full-text query too), so the comparison is only about ranking. For each evaluation set:
recall@k (an answering document among the top ``topK``), top-1 accuracy, and for restricted
questions whether any chunk the asker may not read came back (it must never). The full-text index
is built on a copy of the stack's index (LanceDB's native FTS, no tantivy), so the served index is
not touched. Questions are embedded by the running stack's Triton embedder, as the gateway does.

    LLMCTL_HOME=... python benchmarks/hybrid_retrieval.py blueprints/hr-policy-assistant.yaml \
        blueprints/oncall-assistant.yaml
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rrf(rankings: list[list[str]], k: int = 60) -> list[str]:
    """Reciprocal rank fusion: each list adds 1 / (k + rank) to an id's score."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda key: -scores[key])


def fts(table: Any, question: str, where: str, limit: int) -> list[dict[str, Any]]:
    query = table.search(question, query_type="fts").where(where, prefilter=True).limit(limit)
    return query.select(["chunk_id", "doc_id", "acl"]).to_arrow().to_pylist()


def measure(bp_path: Path, target: str, index_dir: Path | None = None) -> dict[str, Any]:
    from llmctl.blueprint import load_blueprint
    from llmctl.gates.quality import load_eval_set
    from llmctl.gateway.config import load_config
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.index import ChunkIndex, acl_filter
    from llmctl.state import StackState

    bp = load_blueprint(bp_path)
    state = StackState.of(bp.name, target)
    config = load_config(state.gateway_config)
    questions = load_eval_set((bp_path.parent / bp.gates.quality.eval_set).resolve())
    top_k = int(bp.retrieval.top_k)
    work = Path(tempfile.mkdtemp(prefix="hybrid-"))
    try:
        shutil.copytree(index_dir or state.index_dir, work / "index")
        index = ChunkIndex.open(work / "index")
        table = index._table
        from lancedb.index import FTS

        table.create_index("text", config=FTS(), replace=True)
        embedder = TritonEmbedder(config.triton_grpc_url)
        vectors = embedder.embed([q["question"] for q in questions])
        acls = {
            r["chunk_id"]: (r["doc_id"], r["acl"])
            for r in index.scan(["chunk_id", "doc_id", "acl"]).to_pylist()
        }
        tally = {m: {"recall": 0, "top1": 0, "leaks": 0} for m in ("vector", "hybrid")}
        answerable = restricted = 0
        for q, vec in zip(questions, vectors, strict=True):
            groups = list(q.get("asker_groups") or [])
            where = acl_filter(groups)
            vec_hits = [h.chunk_id for h in index.search(vec, groups, top_k * 3)]
            text_hits = (
                [r["chunk_id"] for r in fts(table, q["question"], where, top_k * 3)]
                if where
                else []
            )
            ranked = {"vector": vec_hits[:top_k], "hybrid": rrf([vec_hits, text_hits])[:top_k]}
            expected = set(q.get("expected_docs") or [])
            if q.get("kind") == "restricted":
                restricted += 1
            else:
                answerable += 1
            for mode, chunks in ranked.items():
                docs = [acls[c][0] for c in chunks]
                leaked = [c for c in chunks if not set(acls[c][1]) & set(groups)]
                tally[mode]["leaks"] += bool(leaked)
                if q.get("kind") != "restricted":
                    tally[mode]["recall"] += bool(expected & set(docs))
                    tally[mode]["top1"] += bool(docs) and docs[0] in expected
        embedder.close()
        return {
            "blueprint": bp.name,
            "answerable": answerable,
            "restricted": restricted,
            **{
                mode: {
                    "recall_at_k": round(t["recall"] / answerable, 4),
                    "top1": round(t["top1"] / answerable, 4),
                    "queries_with_unreadable_chunks": t["leaks"],
                }
                for mode, t in tally.items()
            },
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blueprints", type=Path, nargs="+")
    ap.add_argument("--target", default="local")
    ap.add_argument("--index", type=Path, help="this index instead of the stack's (one blueprint)")
    args = ap.parse_args()
    for bp in args.blueprints:
        r = measure(bp, args.target, args.index)
        print(f"{r['blueprint']}: {r['answerable']} answerable, {r['restricted']} restricted")
        for mode in ("vector", "hybrid"):
            m = r[mode]
            print(
                f"  {mode:7} recall@k {m['recall_at_k']:.4f}  top-1 {m['top1']:.4f}  "
                f"queries returning an unreadable chunk: {m['queries_with_unreadable_chunks']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
