"""The example corpus and its evaluation set stay consistent with each other.

These checks are what makes the evaluation set trustworthy: every expected document exists and
contains the expected fact, the asker of an answerable question can read it, and the asker of a
restricted question cannot, and the restricted fact appears nowhere the asker could read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmctl.retrieval.documents import SourceSpec, read_source

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "blueprints" / "corpora" / "hr-policy"
EVAL = ROOT / "blueprints" / "corpora" / "hr-policy-eval.yaml"


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    return read_source(SourceSpec("hr-policy", CORPUS, sensitivity="confidential"))


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return yaml.safe_load(EVAL.read_text(encoding="utf-8"))["questions"]


def test_corpus_reads_cleanly_with_explicit_acls(corpus) -> None:  # type: ignore[no-untyped-def]
    assert not corpus.errors and not corpus.skipped
    assert len(corpus.documents) >= 32
    restricted = [d for d in corpus.documents if "all-employees" not in d.acl]
    assert len(restricted) >= 6
    assert {d.acl_origin for d in corpus.documents} == {"front-matter", "sidecar"}
    assert {d.format for d in corpus.documents} == {"markdown", "text"}
    for d in corpus.documents:
        words = len(d.text.split())
        assert 250 <= words <= 900, (d.doc_id, words)


def test_eval_set_shape(questions: list[dict]) -> None:
    ids = [q["id"] for q in questions]
    assert len(ids) == len(set(ids)) and len(ids) >= 44
    kinds = [q["kind"] for q in questions]
    assert set(kinds) == {"answerable", "restricted"}
    assert kinds.count("restricted") >= 8
    member_asks = [
        q
        for q in questions
        if q["kind"] == "answerable" and set(q["asker_groups"]) - {"all-employees"}
    ]
    assert len(member_asks) >= 5


def test_eval_answers_are_in_readable_documents(corpus, questions: list[dict]) -> None:  # type: ignore[no-untyped-def]
    docs = {d.doc_id: d for d in corpus.documents}
    for q in questions:
        groups = set(q["asker_groups"])
        if q["kind"] == "answerable":
            assert q["expected_docs"], q["id"]
            for doc_id in q["expected_docs"]:
                assert doc_id in docs, (q["id"], doc_id)
                assert groups & set(docs[doc_id].acl), (q["id"], "asker cannot read", doc_id)
            fact = q.get("expected_answer_contains")
            if fact:
                assert any(fact in _flat(docs[d].text) for d in q["expected_docs"]), (q["id"], fact)
        else:
            assert q["expected_docs"] == [], q["id"]
            for doc_id in q["restricted_docs"]:
                assert doc_id in docs, (q["id"], doc_id)
                assert not groups & set(docs[doc_id].acl), (q["id"], "asker can read", doc_id)


# Facts only the restricted documents hold: if one leaks into a readable document the
# "restricted" questions stop testing access control.
RESTRICTED_FACTS = {
    "hr/salary-bands-2026": ["155,000", "3.8%", "market premium of 8%"],
    "hr/disciplinary-procedure": ["18 months", "DC-"],
    "finance/signing-authority-matrix": ["$2,500,000", "$7,500,000", "Panel A"],
    "finance/quarter-close": ["17:00 Eastern", "Chief Accounting Officer"],
    "it-security/incident-response-runbook": ["7731", "Priya Raman", "NWC-IR-2291"],
    "it-security/pentest-findings-2026": ["NW-PT-2026-01", "Bishop Fox"],
    "compliance/investigation-procedure": ["CI-YYYY-NNN", "two investigators", "Category A"],
}


def test_restricted_facts_appear_nowhere_else(corpus) -> None:  # type: ignore[no-untyped-def]
    docs = {d.doc_id: d for d in corpus.documents}
    for owner, facts in RESTRICTED_FACTS.items():
        assert "all-employees" not in docs[owner].acl
        for fact in facts:
            assert fact in _flat(docs[owner].text), (owner, fact)
            others = [
                d.doc_id
                for d in corpus.documents
                if fact in _flat(d.text)
                and d.doc_id != owner
                and set(d.acl) != set(docs[owner].acl)
            ]
            assert not others, (fact, others)
