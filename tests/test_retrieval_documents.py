"""Document reading: validation (skip with a reason, never crash) and where ACLs come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.retrieval.documents import (
    InvalidGroup,
    SourceSpec,
    read_source,
    read_sources,
    split_front_matter,
    validate_group,
)

BODY = "# Title\n\nSome policy text that is long enough to be indexed as a document.\n"


def _doc(acl: str | None = "[all-employees]", body: str = BODY, title: str = "A policy") -> str:
    if acl is None:
        return body
    return f"---\ntitle: {title}\nacl: {acl}\n---\n\n{body}"


def _write(root: Path, rel: str, content: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def _source(root: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="policies", root=root, **kw)  # type: ignore[arg-type]


def _reasons(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {s.path.split(":", 1)[1]: s.reason for s in result.skipped}


def test_reads_markdown_and_text_with_front_matter(tmp_path: Path) -> None:
    _write(tmp_path, "hr/leave.md", _doc(title="Leave"))
    _write(tmp_path, "it/vpn.txt", _doc(acl="[it, all-employees]", body="VPN rules " * 5))
    result = read_source(_source(tmp_path))
    assert not result.errors and not result.skipped
    docs = {d.doc_id: d for d in result.documents}
    assert set(docs) == {"hr/leave", "it/vpn"}
    assert docs["hr/leave"].title == "Leave"
    assert docs["hr/leave"].acl == ("all-employees",)
    assert docs["hr/leave"].acl_origin == "front-matter"
    assert docs["it/vpn"].acl == ("all-employees", "it")
    assert docs["it/vpn"].format == "text"
    assert not docs["hr/leave"].text.startswith("---")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", "", "empty"),
        ("blank.md", _doc(body="\n   \n\t\n"), "empty"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "binary"),
        (
            "latin1.md",
            "---\nacl: [a]\n---\nCaf\xe9 policy text, long enough.".encode("latin-1"),
            "not UTF-8",
        ),
        ("slides.pptx", b"PK\x03\x04", "unsupported file type"),
    ],
)
def test_bad_files_are_skipped_with_a_reason(
    tmp_path: Path, name: str, content: str | bytes, reason: str
) -> None:
    _write(tmp_path, "good.md", _doc())
    _write(tmp_path, name, content)
    result = read_source(_source(tmp_path))
    assert [d.doc_id for d in result.documents] == ["good"]
    assert reason in _reasons(result)[name]
    assert not result.errors


def test_too_large_is_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "big.md", _doc(body="word " * 1000))
    result = read_source(_source(tmp_path), max_bytes=1000)
    assert "too large" in _reasons(result)["big.md"]


def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing-target.md")
    _write(tmp_path, "good.md", _doc())
    result = read_source(_source(tmp_path))
    assert "unreadable" in _reasons(result)["gone.md"]
    assert [d.doc_id for d in result.documents] == ["good"]


def test_duplicate_content_is_skipped_across_sources(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "one.md", _doc())
    _write(a, "two.md", _doc(body=BODY.replace("text", "text  ")))  # same after whitespace norm
    _write(b, "three.md", _doc(acl="[other]"))  # same body, different ACL: still a duplicate
    result = read_sources([SourceSpec("a", a), SourceSpec("b", b)])
    assert [d.doc_id for d in result.documents] == ["one"]
    reasons = {s.path: s.reason for s in result.skipped}
    assert "duplicate content of 'one'" in reasons["a:two.md"]
    assert "duplicate content of 'one'" in reasons["b:three.md"]


def test_format_not_enabled_is_skipped(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", _doc())
    result = read_source(_source(tmp_path, formats=("markdown",)))
    assert "not enabled" in _reasons(result)["a.txt"]


def test_sidecar_acl(tmp_path: Path) -> None:
    _write(tmp_path, "fin/close.txt", "Quarter close steps, long enough to be a document.")
    _write(tmp_path, "fin/close.acl.yaml", "title: Close\nacl: [finance]\nowner: Controller\n")
    result = read_source(_source(tmp_path, sensitivity="confidential"))
    assert not result.errors
    (doc,) = result.documents
    assert doc.acl == ("finance",)
    assert doc.acl_origin == "sidecar"
    assert doc.title == "Close" and doc.owner == "Controller"


def test_conflicting_front_matter_and_sidecar_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "x.md", _doc(acl="[all-employees]"))
    _write(tmp_path, "x.acl.yaml", "acl: [finance]\n")
    result = read_source(_source(tmp_path))
    assert not result.documents
    assert "disagree" in result.errors[0].message


def test_source_default_acl_for_an_internal_source(tmp_path: Path) -> None:
    _write(tmp_path, "faq.md", _doc(acl=None))
    result = read_source(_source(tmp_path, acl=("all-employees",)))
    (doc,) = result.documents
    assert doc.acl == ("all-employees",) and doc.acl_origin == "source-default"


@pytest.mark.parametrize("sensitivity", ["confidential", "restricted"])
def test_sensitive_source_without_document_acl_is_an_error_not_a_default(
    tmp_path: Path, sensitivity: str
) -> None:
    _write(tmp_path, "with.md", _doc(acl="[hr-admins]"))
    _write(tmp_path, "without.md", _doc(acl=None, body="Salary data nobody labelled, long text."))
    result = read_source(_source(tmp_path, sensitivity=sensitivity, acl=("all-employees",)))
    assert [d.doc_id for d in result.documents] == ["with"]
    (err,) = result.errors
    assert err.path == "policies:without.md"
    assert "no ACL" in err.message and sensitivity in err.message


def test_no_acl_anywhere_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.md", _doc(acl=None))
    result = read_source(_source(tmp_path))
    assert not result.documents and "no ACL" in result.errors[0].message


@pytest.mark.parametrize("acl", ['["x\') OR true --"]', "[]", '["has space"]', '[""]'])
def test_invalid_acl_groups_are_errors(tmp_path: Path, acl: str) -> None:
    _write(tmp_path, "a.md", _doc(acl=acl))
    result = read_source(_source(tmp_path))
    assert not result.documents and result.errors


def test_malformed_front_matter_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path, "a.md", "---\nacl: [unclosed\n---\n" + BODY)
    result = read_source(_source(tmp_path))
    assert not result.documents
    assert "front matter" in result.errors[0].message


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    result = read_source(_source(tmp_path / "nope"))
    assert "does not exist" in result.errors[0].message


def test_front_matter_split() -> None:
    meta, body = split_front_matter("---\ntitle: T\n---\nbody\n")
    assert meta == {"title": "T"} and body == "body\n"
    assert split_front_matter("no front matter") == (None, "no front matter")


@pytest.mark.parametrize("bad", ["", "a b", "x'y", "a,b", "-lead", "[x]", "a" * 129, None, 3])
def test_group_validation_rejects(bad: object) -> None:
    with pytest.raises(InvalidGroup):
        validate_group(bad)


@pytest.mark.parametrize("good", ["all-employees", "hr-admins", "team:risk", "a.b@c", "G1_x"])
def test_group_validation_accepts(good: str) -> None:
    assert validate_group(good) == good


def test_pdf_is_read_when_pypdf_is_available(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    with open(tmp_path / "blank.pdf", "wb") as fh:
        writer.write(fh)
    _write(tmp_path, "blank.acl.yaml", "acl: [all-employees]\n")
    result = read_source(_source(tmp_path, formats=("pdf",)))
    # a PDF without a text layer is skipped as empty, not a crash
    assert "empty" in _reasons(result)["blank.pdf"]
