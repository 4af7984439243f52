"""The vector index: an embedded LanceDB table of chunks with their ACL groups.

Access control lives *inside* the vector search: ``search`` passes the caller's groups as a
LanceDB prefilter (``array_has_any(acl, [...])`` with ``prefilter=True``), so the nearest-neighbour
search only ever ranks chunks the caller may read. A post-filter (search, then drop what the caller
may not see) would both leak through timing and scores and return fewer than ``top_k`` hits
whenever the nearest chunks are restricted ones; the property test in
``tests/test_retrieval_acl.py`` checks both.

Group names are validated against the blueprint's group pattern before they reach the filter
string (no quotes, brackets, commas or spaces can pass), and are quoted as SQL string literals on
top of that. A caller group that fails the pattern is dropped: it cannot equal any ACL entry,
because every ACL entry was validated with the same pattern at ingest, so dropping it changes
nothing but the risk.

Indexes (measured by ``benchmarks/retrieval_search.py``): a LABEL_LIST
scalar index on ``acl`` makes the prefilter cheap; an IVF_FLAT vector index makes the ranking
cheap but approximate, so it is built only above ``VECTOR_INDEX_MIN_ROWS`` (a policy corpus of
a few thousand chunks is searched exactly in milliseconds). IVF_FLAT keeps full vectors inside
each partition: on 100,000 filtered chunks it measured recall@5 1.000 against exact search at
p95 ~10 ms, where IVF_HNSW_SQ reached 0.976 and IVF_PQ 0.958 at similar latency, and it builds
three times faster than IVF_HNSW_SQ.

Below ``VECTOR_INDEX_MIN_ROWS`` the index is small enough to hold in memory (at most ~80 MB of
vectors; the other columns stay in Arrow buffers), and ``search`` ranks a resident copy with
NumPy instead of asking LanceDB: a LanceDB query costs about 6-10 ms of fixed planning and scan
work on 2 cores, most of the gateway's retrieval time apart from embedding, where the in-memory
search over 2,000 chunks takes 0.6 ms and over 20,000 2.6 ms (LanceDB exact: 9 and 28 ms;
``benchmarks/retrieval_search.py --rows 2000 --skip-ann``). The ACL is still a prefilter: a
per-group row mask selects the caller's readable rows *before* the top-k is taken, so an
unreadable chunk is never ranked and the result is always full. The copy is keyed by the table's
version and reloaded when an ingest commits a new one; a reader opened with ``refresh_s`` checks
the version at most every ``refresh_s / 2`` (asking costs ~0.8 ms). LanceDB stays the store,
and the engine for bigger indexes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmctl.errors import LlmctlError
from llmctl.retrieval.documents import GROUP_PATTERN
from llmctl.retrieval.embedders import l2_normalise

TABLE = "chunks"
MANIFEST = "manifest.json"
INDEX_VERSION = 1  # schema version of the table; bump when columns change (forces a rebuild)
SCALAR_INDEX_MIN_ROWS = 5_000
VECTOR_INDEX_MIN_ROWS = 50_000

COLUMNS = (
    "chunk_id",
    "doc_id",
    "source",
    "title",
    "path",
    "heading",
    "chunk_index",
    "chunk_hash",
    "doc_hash",
    "text",
    "acl",
    "index_version",
)


class IndexError_(LlmctlError):
    """The index cannot be opened or written."""


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is cosine similarity (1.0 is identical)."""

    doc_id: str
    chunk_id: str
    title: str
    path: str
    heading: str
    text: str
    score: float
    chunk_hash: str
    acl: tuple[str, ...]
    source: str = ""


def safe_groups(groups: Iterable[str]) -> list[str]:
    """The caller's groups that can appear in an ACL, deduplicated and sorted."""
    return sorted({g for g in groups if isinstance(g, str) and GROUP_PATTERN.match(g)})


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def acl_filter(groups: Sequence[str]) -> str | None:
    """The prefilter expression for ``groups`` (None when no group can match anything)."""
    valid = safe_groups(groups)
    if not valid:
        return None
    return "array_has_any(acl, [" + ", ".join(_literal(g) for g in valid) + "])"


def content_hash(
    chunk_ids: Sequence[str],
    chunk_hashes: Sequence[str],
    acls: Sequence[Sequence[str] | None],
    model_id: str,
    dim: int,
) -> str:
    """The index's content hash: embedding model, dimensions and every chunk with its ACL,
    independent of row order (what answers and audit records carry as ``index_hash``)."""
    import hashlib

    triples = sorted(
        zip(chunk_ids, chunk_hashes, (",".join(sorted(a or ())) for a in acls), strict=True)
    )
    h = hashlib.sha256(f"{model_id}\x00{dim}\x00".encode())
    for cid, chash, acl in triples:
        h.update(f"{cid}\x00{chash}\x00{acl}\n".encode())
    return h.hexdigest()


def table_content_hash(fields: Any, model_id: str, dim: int) -> str:
    """``content_hash`` of an Arrow table holding ``chunk_id``, ``chunk_hash`` and ``acl``."""
    return content_hash(
        fields.column("chunk_id").to_pylist(),
        fields.column("chunk_hash").to_pylist(),
        fields.column("acl").to_pylist(),
        model_id,
        dim,
    )


def schema(dim: int) -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("source", pa.string()),
            pa.field("title", pa.string()),
            pa.field("path", pa.string()),
            pa.field("heading", pa.string()),
            pa.field("chunk_index", pa.int32()),
            pa.field("chunk_hash", pa.string()),
            pa.field("doc_hash", pa.string()),
            pa.field("text", pa.string()),
            pa.field("acl", pa.list_(pa.string())),
            pa.field("index_version", pa.int32()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def rows_to_table(rows: Sequence[dict[str, Any]], vectors: np.ndarray, dim: int) -> Any:
    """Arrow table from row dicts (COLUMNS minus index_version) and their vectors."""
    import pyarrow as pa

    sch = schema(dim)
    cols: dict[str, Any] = {}
    for name in COLUMNS:
        if name == "index_version":
            cols[name] = pa.array([INDEX_VERSION] * len(rows), pa.int32())
        else:
            cols[name] = pa.array([r[name] for r in rows], sch.field(name).type)
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    cols["vector"] = pa.FixedSizeListArray.from_arrays(flat, dim)
    return pa.table(cols, schema=sch)


class _Resident:
    """A version of the table held in memory: unit vectors and per-group row masks for ranking;
    the other columns stay in their compact Arrow form until a row is returned."""

    def __init__(self, table: Any, dim: int) -> None:
        n = table.num_rows
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        self.vectors = l2_normalise(np.asarray(flat, dtype=np.float32).reshape(n, dim))
        self.fields = table.drop(["vector"]).combine_chunks()
        masks: dict[str, np.ndarray] = {}
        for i, acl in enumerate(self.fields.column("acl").to_pylist()):
            for group in acl or ():
                mask = masks.get(group)
                if mask is None:
                    mask = masks[group] = np.zeros(n, dtype=bool)
                mask[i] = True
        self.masks = masks

    def search(self, q: np.ndarray, groups: Sequence[str], top_k: int) -> list[Hit]:
        readable = np.zeros(self.vectors.shape[0], dtype=bool)
        for group in groups:
            mask = self.masks.get(group)
            if mask is not None:
                readable |= mask
        candidates = np.flatnonzero(readable)  # the prefilter: only these rows are ranked
        if candidates.size == 0:
            return []
        norm = float(np.linalg.norm(q))
        # One product over every row and a gather is 2-3x faster than gathering the readable
        # vectors first (a copy); it also takes the same time whoever asks.
        scores = (self.vectors @ (q / (norm or 1.0)))[candidates]
        k = min(top_k, candidates.size)
        best = np.argpartition(-scores, k - 1)[:k] if k < candidates.size else np.arange(k)
        best = best[np.lexsort((candidates[best], -scores[best]))]
        rows = self.fields.take(candidates[best]).to_pylist()
        return [_hit(row, float(scores[j])) for row, j in zip(rows, best, strict=True)]


def _hit(row: dict[str, Any], score: float) -> Hit:
    return Hit(
        doc_id=row["doc_id"],
        chunk_id=row["chunk_id"],
        title=row["title"] or "",
        path=row["path"] or "",
        heading=row["heading"] or "",
        text=row["text"] or "",
        score=score,
        chunk_hash=row["chunk_hash"] or "",
        acl=tuple(row["acl"] or ()),
        source=row["source"] or "",
    )


class ChunkIndex:
    """One LanceDB table in ``directory`` plus a small manifest (model id, index hash)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        table: Any,
        db: Any,
        refresh_s: float | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._table = table
        self._db = db
        self.dim = int(table.schema.field("vector").type.list_size)
        # Tables with fewer rows are searched in memory; 0 always asks LanceDB.
        self.resident_max_rows = VECTOR_INDEX_MIN_ROWS
        # (table version, its in-memory copy or None when the table is too big to hold, and the
        # content hash of that version: what an answer served from it records)
        self._resident: tuple[int, _Resident | None, str] = (-1, None, "")
        self._resident_lock = threading.Lock()
        # Asking the table for its version costs ~0.8 ms, more than the in-memory search
        # itself; a reader that accepts ``refresh_s`` of staleness (LanceDB's own re-check
        # interval) asks at most every refresh_s / 2, so it lags an ingest by < 1.5 refresh_s.
        self._refresh_s = refresh_s
        self._version_checked = float("-inf")

    # -- opening ---------------------------------------------------------------------------
    @staticmethod
    def _connect(directory: Path, refresh_s: float | None = None) -> Any:
        # Lance's Rust logger prints WARN lines (such as "No existing dataset ... will be
        # created" on the first ingest) straight to the terminal; failures still raise.
        os.environ.setdefault("LANCEDB_LOG", "error")
        try:
            import lancedb
        except ImportError as exc:
            raise IndexError_("the index needs lancedb (part of llmctl[local])") from exc
        if refresh_s is None:
            return lancedb.connect(str(directory))
        from datetime import timedelta

        return lancedb.connect(
            str(directory), read_consistency_interval=timedelta(seconds=refresh_s)
        )

    @classmethod
    def exists(cls, directory: str | os.PathLike[str]) -> bool:
        return (Path(directory) / f"{TABLE}.lance").is_dir()

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, refresh_s: float | None = 2.0
    ) -> ChunkIndex:
        """Open an existing index (what the gateway does).

        ``refresh_s``: how stale a long-lived reader may be; a gateway that keeps the index open
        sees a re-ingest within that time without a restart (None: never re-check).
        """
        d = Path(directory)
        if not cls.exists(d):
            raise IndexError_(f"no index at {d}: run llmctl ingest first")
        db = cls._connect(d, refresh_s)
        return cls(d, db.open_table(TABLE), db, refresh_s)

    @classmethod
    def create(cls, directory: str | os.PathLike[str], dim: int) -> ChunkIndex:
        """An empty index, replacing whatever was there."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        db = cls._connect(d)
        table = db.create_table(TABLE, schema=schema(dim), mode="overwrite")
        (d / MANIFEST).unlink(missing_ok=True)
        return cls(d, table, db)

    # -- manifest --------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        p = self.directory / MANIFEST
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_manifest(self, data: dict[str, Any]) -> None:
        p = self.directory / MANIFEST
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, p)

    @property
    def index_hash(self) -> str:
        return str(self.manifest().get("index_hash", ""))

    # -- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        return int(self._table.count_rows())

    def scan(self, columns: Sequence[str]) -> Any:
        """Selected columns of every row as an Arrow table (no vectors unless asked)."""
        n = self.count()
        if n == 0:
            import pyarrow as pa

            sch = self._table.schema
            return pa.table({c: pa.array([], sch.field(c).type) for c in columns})
        return self._table.search().select(list(columns)).limit(n).to_arrow()

    def doc_hashes(self) -> dict[str, str]:
        t = self.scan(["doc_id", "doc_hash"])
        return dict(
            zip(t.column("doc_id").to_pylist(), t.column("doc_hash").to_pylist(), strict=True)
        )

    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        groups: Iterable[str],
        top_k: int = 5,
        *,
        exact: bool = False,
        nprobes: int | None = None,
        refine_factor: int | None = None,
    ) -> list[Hit]:
        """The ``top_k`` chunks nearest to ``vector`` among those ``groups`` may read.

        A small index is searched in memory (see the module docstring); ``exact`` asks LanceDB
        for an exact search instead, bypassing any ANN index (the reference for recall
        measurements and for the in-memory search's own tests).
        """
        where = acl_filter(groups)
        if where is None or top_k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise ValueError(f"query vector has {q.shape[0]} dimensions, the index {self.dim}")
        if not exact:
            resident = self._current_resident()
            if resident is not None:
                return resident.search(q, safe_groups(groups), top_k)
        query = (
            self._table.search(q, vector_column_name="vector")
            .distance_type("cosine")
            .where(where, prefilter=True)
            .select([*(c for c in COLUMNS if c != "index_version"), "_distance"])
            .limit(top_k)
        )
        if exact:
            query = query.bypass_vector_index()
        else:
            if nprobes:
                query = query.nprobes(nprobes)
            if refine_factor:
                query = query.refine_factor(refine_factor)
        rows = query.to_arrow().to_pylist()
        return [_hit(r, 1.0 - float(r["_distance"])) for r in rows]

    def _current_resident(self) -> _Resident | None:
        """The in-memory copy of the table's current version; None above the size limit."""
        return self._current()[1]

    def _current(self) -> tuple[int, _Resident | None, str]:
        """(version, in-memory copy or None, content hash) of the table as searched now."""
        current = self._resident
        now = time.monotonic()
        if (
            current[0] >= 0
            and self._refresh_s
            and now - self._version_checked < self._refresh_s / 2
        ):
            return current
        version = int(self._table.version)
        self._version_checked = now
        if current[0] == version:
            return current
        with self._resident_lock:
            current = self._resident
            if current[0] == version:
                return current
            resident = None
            if self.count() < self.resident_max_rows:
                # Keyed by the version read *before* the copy: if an ingest commits in between,
                # the copy is newer than its key and the next search simply reloads it.
                data = self._table.to_arrow().drop(["index_version"])
                resident = _Resident(data, self.dim)
                fields = resident.fields
            else:
                fields = self.scan(["chunk_id", "chunk_hash", "acl"])
            self._resident = (version, resident, self._hash_of(fields))
            return self._resident

    def _hash_of(self, fields: Any) -> str:
        """The content hash (as ``llmctl ingest`` computes it) of the rows in ``fields``."""
        model_id = str((self.manifest().get("signature") or {}).get("model_id") or "")
        if not model_id:  # an index written before the signature held the model id
            return self.index_hash
        return table_content_hash(fields, model_id, self.dim)

    def search_served(
        self, vector: Sequence[float] | np.ndarray, groups: Iterable[str], top_k: int = 5
    ) -> tuple[list[Hit], str]:
        """``search`` plus the content hash of the table version it searched, which follows
        an ingest within ``refresh_s`` exactly as the results do."""
        version, resident, index_hash = self._current()
        groups = list(groups)
        if resident is not None and acl_filter(groups) is not None and top_k > 0:
            q = np.asarray(vector, dtype=np.float32).reshape(-1)
            if q.shape[0] != self.dim:
                raise ValueError(f"query vector has {q.shape[0]} dimensions, the index {self.dim}")
            return resident.search(q, safe_groups(groups), top_k), index_hash
        return self.search(vector, groups, top_k), index_hash

    # -- writing ---------------------------------------------------------------------------
    def replace_documents(self, new_rows: Any, doc_ids: Iterable[str]) -> None:
        """Atomically replace every chunk of ``doc_ids`` with ``new_rows`` (an Arrow table).

        One merge-insert commit: readers (the gateway) see either the old or the new version
        of the index, never a document half-removed.
        """
        ids = sorted(set(doc_ids))
        if not ids and (new_rows is None or new_rows.num_rows == 0):
            return
        if new_rows is None or new_rows.num_rows == 0:
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                self._table.delete("doc_id IN (" + ", ".join(_literal(d) for d in part) + ")")
            return
        scope = "doc_id IN (" + ", ".join(_literal(d) for d in ids) + ")" if ids else "false"
        (
            self._table.merge_insert("chunk_id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(scope)
            .execute(new_rows)
        )

    def add(self, rows: Any) -> None:
        self._table.add(rows)

    def index_names(self) -> set[str]:
        names = set()
        for ix in self._table.list_indices():
            cols = getattr(ix, "columns", None) or []
            names.update(cols)
        return names

    def ensure_indexes(
        self,
        *,
        scalar_min_rows: int = SCALAR_INDEX_MIN_ROWS,
        vector_min_rows: int = VECTOR_INDEX_MIN_ROWS,
        num_partitions: int | None = None,
    ) -> list[str]:
        """Create the ACL label-list index and the vector index once the table is big enough;
        fold new rows into existing indexes. Returns what was done (for the report)."""
        done: list[str] = []
        n = self.count()
        have = self.index_names()
        if n >= scalar_min_rows and "acl" not in have:
            from lancedb.index import LabelList

            self._table.create_index("acl", config=LabelList())
            done.append("acl: LABEL_LIST index")
        if n >= vector_min_rows and "vector" not in have:
            from lancedb.index import IvfFlat

            config = IvfFlat(
                distance_type="cosine", num_partitions=num_partitions or max(1, int(np.sqrt(n) / 2))
            )
            self._table.create_index("vector", config=config)
            done.append("vector: IVF_FLAT index")
        if have and not done:
            self._table.optimize()
            done.append("indexes updated")
        return done
