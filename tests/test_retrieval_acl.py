"""The caller's groups filter *inside* the vector search (a prefilter), on a real LanceDB table.

The property test is the proof that it is a prefilter and not a post-filter: with random
documents, ACLs and callers, no hit is ever from a document the caller cannot read, and the result
is still full (``top_k`` hits) whenever the caller can read at least ``top_k`` chunks, even when
the nearest chunks overall are ones the caller may not see. A post-filter fails the second half.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmctl.retrieval.index import ChunkIndex, acl_filter, rows_to_table, safe_groups

DIM = 16
GROUPS = ["all-employees", "hr-admins", "finance", "security", "compliance"]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(doc_acls: list[list[str]], chunks_per_doc: int) -> list[dict]:
    rows = []
    for d, acl in enumerate(doc_acls):
        for c in range(chunks_per_doc):
            rows.append(
                {
                    "chunk_id": f"d{d}#{c}",
                    "doc_id": f"d{d}",
                    "source": "s",
                    "title": f"Doc {d}",
                    "path": f"s/d{d}.md",
                    "heading": "",
                    "chunk_index": c,
                    "chunk_hash": f"h{d}.{c}",
                    "doc_hash": f"h{d}",
                    "text": f"text {d} {c}",
                    "acl": acl,
                }
            )
    return rows


def _index(
    path: Path, doc_acls: list[list[str]], chunks_per_doc: int, seed: int
) -> tuple[ChunkIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = _rows(doc_acls, chunks_per_doc)
    vectors = _unit(rng, len(rows))
    index = ChunkIndex.create(path, DIM)
    index.add(rows_to_table(rows, vectors, DIM))
    return index, vectors


def test_restricted_nearest_chunk_is_not_returned_and_results_stay_full(tmp_path: Path) -> None:
    # The query *is* the vector of a restricted chunk: a post-filter would rank it first,
    # drop it, and return top_k - 1 hits.
    acls = [["hr-admins"]] + [["all-employees"]] * 9
    index, vectors = _index(tmp_path, acls, 2, seed=1)
    hits = index.search(vectors[0], ["all-employees"], top_k=5)
    assert len(hits) == 5
    assert all(h.doc_id != "d0" for h in hits)
    admin_hits = index.search(vectors[0], ["hr-admins"], top_k=5)
    assert admin_hits[0].chunk_id == "d0#0"
    assert admin_hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.doc_id for h in admin_hits} == {"d0"}  # only two readable chunks exist
    assert len(admin_hits) == 2


def test_hit_fields(tmp_path: Path) -> None:
    index, vectors = _index(tmp_path, [["finance", "all-employees"]], 1, seed=2)
    (hit,) = index.search(vectors[0], ["finance"], top_k=3)
    assert (hit.doc_id, hit.chunk_id, hit.title, hit.path) == ("d0", "d0#0", "Doc 0", "s/d0.md")
    assert hit.acl == ("finance", "all-employees") or set(hit.acl) == {"finance", "all-employees"}
    assert hit.chunk_hash == "h0.0" and hit.text == "text 0 0"


@pytest.mark.parametrize(
    "evil",
    [
        "x') OR true OR array_has_any(acl, ['hr-admins",
        "hr-admins'",
        "' OR 1=1 --",
        "all-employees]) OR (1=1",
        "hr admins",
        "",
    ],
)
def test_group_names_cannot_inject_into_the_filter(tmp_path: Path, evil: str) -> None:
    index, vectors = _index(tmp_path, [["hr-admins"], ["finance"]], 2, seed=3)
    assert index.search(vectors[0], [evil], top_k=4) == []
    hits = index.search(vectors[0], [evil, "finance"], top_k=4)
    assert {h.doc_id for h in hits} == {"d1"}
    assert safe_groups([evil]) == []


def test_filter_expression_quotes_valid_groups() -> None:
    assert acl_filter(["b", "a", "a"]) == "array_has_any(acl, ['a', 'b'])"
    assert acl_filter([]) is None
    assert acl_filter(["no way'"]) is None


def test_no_groups_means_no_hits(tmp_path: Path) -> None:
    index, vectors = _index(tmp_path, [["all-employees"]], 3, seed=4)
    assert index.search(vectors[0], [], top_k=3) == []


def test_indexed_and_unindexed_search_agree_on_acl(tmp_path: Path) -> None:
    """The LABEL_LIST index must not change which chunks a caller can see."""
    acls = [[GROUPS[i % len(GROUPS)]] for i in range(40)]
    index, vectors = _index(tmp_path, acls, 5, seed=5)
    before = [h.chunk_id for h in index.search(vectors[3], ["finance", "security"], top_k=10)]
    assert index.ensure_indexes(scalar_min_rows=1, vector_min_rows=10**9) == [
        "acl: LABEL_LIST index"
    ]
    after = [h.chunk_id for h in index.search(vectors[3], ["finance", "security"], top_k=10)]
    assert before == after


def test_vector_index_keeps_the_acl_prefilter(tmp_path: Path) -> None:
    """With the IVF vector index built, a caller still sees only readable chunks, k of them."""
    acls = [[GROUPS[i % len(GROUPS)]] for i in range(300)]
    index, vectors = _index(tmp_path, acls, 4, seed=6)
    index.resident_max_rows = 0  # ask LanceDB, whose IVF index this test is about
    done = index.ensure_indexes(scalar_min_rows=1, vector_min_rows=1, num_partitions=4)
    assert "vector: IVF_FLAT index" in done
    caller = ["finance"]
    readable = {f"d{i}" for i, acl in enumerate(acls) if set(acl) & set(caller)}
    for q in range(0, len(vectors), 97):
        hits = index.search(vectors[q], caller, top_k=8)
        assert len(hits) == 8
        assert {h.doc_id for h in hits} <= readable


_acl = st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3, unique=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc_acls=st.lists(_acl, min_size=1, max_size=12),
    chunks_per_doc=st.integers(1, 4),
    caller=st.lists(st.sampled_from([*GROUPS, "contractors"]), max_size=3, unique=True),
    top_k=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    query_doc=st.integers(0, 11),
)
def test_prefilter_property(
    tmp_path_factory: pytest.TempPathFactory,
    doc_acls: list[list[str]],
    chunks_per_doc: int,
    caller: list[str],
    top_k: int,
    seed: int,
    query_doc: int,
) -> None:
    index, vectors = _index(tmp_path_factory.mktemp("idx"), doc_acls, chunks_per_doc, seed)
    # query with the vector of some chunk, often one the caller cannot read
    q = vectors[min(query_doc, len(doc_acls) - 1) * chunks_per_doc]
    hits = index.search(q, caller, top_k=top_k)  # the in-memory search of a small index
    lance = index.search(q, caller, top_k=top_k, exact=True)  # LanceDB's own prefilter
    assert [h.chunk_id for h in hits] == [h.chunk_id for h in lance]
    assert [round(h.score, 4) for h in hits] == [round(h.score, 4) for h in lance]

    readable = {f"d{i}" for i, acl in enumerate(doc_acls) if set(acl) & set(caller)}
    assert all(h.doc_id in readable for h in hits)
    assert len(hits) == min(top_k, len(readable) * chunks_per_doc)

    # and the hits are exactly the nearest readable chunks (exact search on 16-dim vectors)
    ids = [f"d{d}#{c}" for d in range(len(doc_acls)) for c in range(chunks_per_doc)]
    sims = vectors @ q
    order = [ids[i] for i in np.argsort(-sims, kind="stable") if ids[i].split("#")[0] in readable]
    expected_scores = sorted((float(sims[ids.index(c)]) for c in order[:top_k]), reverse=True)
    assert [round(h.score, 4) for h in hits] == [round(s, 4) for s in expected_scores]


def test_in_memory_search_follows_new_versions_and_size_limit(tmp_path: Path) -> None:
    """A reader's in-memory copy is replaced when the table changes, and big tables use LanceDB."""
    acls = [["all-employees"], ["finance"]]
    index, vectors = _index(tmp_path, acls, 3, seed=7)
    reader = ChunkIndex.open(tmp_path, refresh_s=0)
    assert [h.doc_id for h in reader.search(vectors[3], ["finance"], top_k=1)] == ["d1"]
    # re-ACL d1 to hr-admins: the finance caller must lose it at once, the hr-admin gain it
    rows = _rows([["all-employees"], ["hr-admins"]], 3)[3:]
    index.replace_documents(rows_to_table(rows, vectors[3:], DIM), ["d1"])
    assert reader.search(vectors[3], ["finance"], top_k=3) == []
    assert [h.doc_id for h in reader.search(vectors[3], ["hr-admins"], top_k=1)] == ["d1"]
    reader.resident_max_rows = 6  # the table has 6 rows: too big to hold, LanceDB answers
    reader._resident = (-1, None)
    assert [h.doc_id for h in reader.search(vectors[3], ["hr-admins"], top_k=1)] == ["d1"]
    assert reader._resident[1] is None
