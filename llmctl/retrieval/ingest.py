"""Ingestion: documents -> chunks -> embeddings -> index, touching only what changed.

Incremental by content hash: a document whose hash (text, title, ACL, format) matches the one
stored with its chunks is not re-chunked or re-embedded; a changed one has all its chunks replaced
in one atomic write; a document that disappeared (or now fails validation) is removed. Anything
that changes every chunk (embedding model, dimensions, chunk size, tokenizer, table schema)
rebuilds the index from scratch, because mixing two embedding spaces in one index silently
ruins ranking.

The **index hash** is a content hash over the sorted (chunk id, chunk hash, ACL) triples plus the
embedding model id and dimensions. It changes exactly when what a caller can retrieve changes,
so the gateway can stamp it on every answer and the audit trail can tie an answer to an index
version; re-running ingest on unchanged documents leaves it (and the table) untouched.

The core never prints: it reports progress through ``progress(ProgressEvent)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmctl.retrieval.chunking import (
    Chunk,
    Tokenizer,
    chunk_document,
    default_tokenizer,
    tokenizer_for,
)
from llmctl.retrieval.documents import (
    Document,
    DocumentError,
    ReadResult,
    Skipped,
    acl_summary,
    read_sources,
    sources_from_blueprint,
)
from llmctl.retrieval.embedders import Embedder
from llmctl.retrieval.index import INDEX_VERSION, ChunkIndex, rows_to_table, table_content_hash

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` is one of read, chunk, embed, write, index; ``done`` of ``total`` units."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


@dataclass
class IngestReport:
    index_dir: str
    index_hash: str
    previous_index_hash: str
    embedding_model: str
    tokenizer: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    chunks_embedded: int = 0
    acl_groups: dict[str, int] = field(default_factory=dict)
    indexes: list[str] = field(default_factory=list)
    rebuilt: str = ""  # why the whole index was rebuilt, if it was
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def changed(self) -> bool:
        return self.index_hash != self.previous_index_hash

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["changed"] = self.changed
        return d


def compute_index_hash(index: ChunkIndex, model_id: str) -> str:
    return table_content_hash(index.scan(["chunk_id", "chunk_hash", "acl"]), model_id, index.dim)


def _rows(doc: Document, chunks: Sequence[Chunk]) -> list[dict[str, Any]]:
    return [
        {
            "chunk_id": c.chunk_id,
            "doc_id": doc.doc_id,
            "source": doc.source,
            "title": doc.title,
            "path": f"{doc.source}/{doc.rel_path}",
            "heading": c.heading,
            "chunk_index": c.index,
            "chunk_hash": c.chunk_hash,
            "doc_hash": doc.content_hash,
            "text": c.text,
            "acl": list(doc.acl),
        }
        for c in chunks
    ]


def ingest_documents(
    read: ReadResult,
    embedder: Embedder,
    index_dir: str | Path,
    *,
    tokens: int = 200,
    overlap: int = 32,
    tokenizer: Tokenizer | None = None,
    embed_batch: int = 256,
    progress: ProgressFn | None = None,
    vector_index_min_rows: int | None = None,
) -> IngestReport:
    """Bring the index in ``index_dir`` in line with the documents in ``read``."""
    started = time.perf_counter()
    emit = progress or (lambda _e: None)
    model_dir = getattr(embedder, "model_dir", None)
    tok = tokenizer or (tokenizer_for(model_dir) if model_dir else default_tokenizer())
    model_id = str(getattr(embedder, "model_id", "unknown"))
    dim = int(getattr(embedder, "dim", 0) or 384)
    signature = {
        "model_id": model_id,
        "dim": dim,
        "index_version": INDEX_VERSION,
        "chunk_tokens": tokens,
        "chunk_overlap": overlap,
        "tokenizer": tok.name,
    }

    index_dir = Path(index_dir)
    rebuilt = ""
    index: ChunkIndex | None = None
    previous_hash = ""
    if ChunkIndex.exists(index_dir):
        try:
            index = ChunkIndex.open(index_dir)
            previous_hash = index.index_hash
            old = index.manifest().get("signature")
            if old != signature:
                changed = sorted(k for k in signature if not old or old.get(k) != signature[k])
                rebuilt = "settings changed: " + ", ".join(changed)
                index = None
        except Exception as exc:  # a damaged index is rebuilt, not fatal
            rebuilt = f"existing index unreadable ({type(exc).__name__})"
            index = None
    if index is None:
        index = ChunkIndex.create(index_dir, dim)

    stored = index.doc_hashes()
    stored_docs: dict[str, str] = {}
    for doc_id, h in stored.items():
        stored_docs.setdefault(doc_id, h)

    report = IngestReport(
        index_dir=str(index_dir),
        index_hash="",
        previous_index_hash=previous_hash,
        embedding_model=model_id,
        tokenizer=tok.name,
        skipped=list(read.skipped),
        errors=list(read.errors),
        documents=len(read.documents),
        acl_groups=acl_summary(read.documents),
        rebuilt=rebuilt,
    )

    todo: list[Document] = []
    for doc in read.documents:
        old_hash = stored_docs.get(doc.doc_id)
        if old_hash is None:
            report.added.append(doc.doc_id)
            todo.append(doc)
        elif old_hash != doc.content_hash:
            report.updated.append(doc.doc_id)
            todo.append(doc)
        else:
            report.unchanged.append(doc.doc_id)
    present = {d.doc_id for d in read.documents}
    report.removed = sorted(set(stored_docs) - present)

    # chunk
    rows: list[dict[str, Any]] = []
    texts: list[str] = []
    for i, doc in enumerate(todo, 1):
        chunks = chunk_document(doc, tok, tokens=tokens, overlap=overlap)
        rows += _rows(doc, chunks)
        texts += [c.embed_text for c in chunks]
        emit(ProgressEvent("chunk", i, len(todo), doc.doc_id))

    # embed (groups larger than one request so a concurrent embedder keeps Triton busy)
    vectors = np.zeros((0, dim), dtype=np.float32)
    if texts:
        parts = []
        t0 = time.perf_counter()
        emit(ProgressEvent("embed", 0, len(texts)))
        for start in range(0, len(texts), embed_batch):
            part = embedder.embed(texts[start : start + embed_batch])
            parts.append(np.asarray(part, dtype=np.float32))
            emit(ProgressEvent("embed", min(start + embed_batch, len(texts)), len(texts)))
        report.embed_seconds = time.perf_counter() - t0
        vectors = np.concatenate(parts)
        if vectors.shape != (len(texts), dim):
            raise ValueError(f"embedder returned {vectors.shape}, expected ({len(texts)}, {dim})")
    report.chunks_embedded = len(texts)

    # write: one atomic commit for changed + removed documents
    touched = [d.doc_id for d in todo if d.doc_id in stored_docs] + report.removed
    if rows or touched:
        emit(ProgressEvent("write", 0, 1))
        index.replace_documents(rows_to_table(rows, vectors, dim), touched)
        emit(ProgressEvent("write", 1, 1))
        emit(ProgressEvent("index", 0, 1))
        kwargs = {} if vector_index_min_rows is None else {"vector_min_rows": vector_index_min_rows}
        report.indexes = index.ensure_indexes(**kwargs)
        emit(ProgressEvent("index", 1, 1))

    report.chunks = index.count()
    report.index_hash = compute_index_hash(index, model_id)
    if report.changed or rebuilt or not index.manifest():
        index.write_manifest(
            {
                "signature": signature,
                "index_hash": report.index_hash,
                "documents": len(read.documents),
                "chunks": report.chunks,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    report.seconds = time.perf_counter() - started
    return report


def blueprint_tokenizer(bp: Blueprint) -> Tokenizer:
    """The tokenizer of the blueprint's embedding model (the approximation if not available)."""
    try:
        from llmctl.local.spec import resolve_embedding_model

        return tokenizer_for(resolve_embedding_model(bp.retrieval.embedding.model, bp.base_dir))
    except Exception:
        return default_tokenizer()


def ingest(
    bp: Blueprint,
    embedder: Embedder,
    index_dir: str | Path,
    *,
    progress: ProgressFn | None = None,
    tokenizer: Tokenizer | None = None,
) -> IngestReport:
    """Ingest every ``retrieval.sources`` entry of the blueprint ``bp`` into ``index_dir``."""
    emit = progress or (lambda _e: None)
    sources = sources_from_blueprint(bp)
    emit(ProgressEvent("read", 0, len(sources)))
    read = read_sources(sources)
    emit(ProgressEvent("read", len(sources), len(sources), f"{len(read.documents)} documents"))
    chunking = bp.retrieval.chunking
    embedding = bp.retrieval.embedding
    if tokenizer is None:
        tokenizer = blueprint_tokenizer(bp)
    return ingest_documents(
        read,
        embedder,
        index_dir,
        tokens=int(chunking.tokens),
        overlap=int(chunking.overlap),
        tokenizer=tokenizer,
        embed_batch=max(int(embedding.batch_size) * 4, 64),
        progress=progress,
    )
