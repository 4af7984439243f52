"""Read a blueprint's document sources into validated documents with their ACLs.

Why this module is strict: the ACL read here is the only thing that later decides who may see a
chunk (the index filters on it inside the vector search). A document whose ACL is lost or
guessed is a permission leak, so

- an explicit ACL (YAML front matter or a ``<file>.acl.yaml`` sidecar) is never ignored, whatever
  the source's ``aclFrom`` says: ignoring a stricter ACL would widen access;
- a document in a ``confidential``/``restricted`` source without an explicit ACL is an *error*
  in the report and is not indexed; the source's default ACL is not applied silently;
- one bad file never stops the run: it is skipped with a reason (empty, duplicate, unreadable,
  binary, not UTF-8, too large, unsupported format) and ingestion goes on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

# The blueprint schema's ``$defs/group`` pattern: the same names the gateway reads from tokens.
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")

SIDECAR_SUFFIX = ".acl.yaml"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MIN_TEXT_CHARS = 20

# Extensions per blueprint format name (schema: markdown | text | pdf).
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "markdown": (".md", ".markdown"),
    "text": (".txt", ".text"),
    "pdf": (".pdf",),
}

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


class InvalidGroup(ValueError):
    """A group name that does not match the blueprint's group pattern."""


def validate_group(name: object) -> str:
    """Return ``name`` if it is a valid group, else raise InvalidGroup.

    Group names end up inside the index's filter expression; the strict pattern (no quotes,
    brackets, spaces or commas) is what makes that safe, on top of quoting.
    """
    if not isinstance(name, str) or not GROUP_PATTERN.match(name):
        raise InvalidGroup(f"invalid group name {name!r} (allowed: {GROUP_PATTERN.pattern})")
    return name


@dataclass(frozen=True)
class Document:
    """One readable document, ready to chunk. ``doc_id`` is its path below the source root
    without the extension (what citations and the evaluation set name)."""

    doc_id: str
    source: str
    path: Path
    rel_path: str
    title: str
    text: str
    acl: tuple[str, ...]
    acl_origin: str  # "front-matter" | "sidecar" | "source-default"
    format: str  # "markdown" | "text" | "pdf"
    owner: str = ""
    effective: str = ""

    @property
    def content_hash(self) -> str:
        """Changes when anything that reaches the index changes: text, title or ACL."""
        h = hashlib.sha256()
        for part in (self.title, ",".join(sorted(self.acl)), self.format, self.text):
            h.update(part.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why (not an error: the rest of the run is fine)."""

    path: str
    reason: str


@dataclass(frozen=True)
class DocumentError:
    """A file that must not be indexed as it is: the blueprint or the file needs fixing."""

    path: str
    message: str


@dataclass
class ReadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)


@dataclass(frozen=True)
class SourceSpec:
    """The parts of a blueprint ``retrieval.sources`` entry this module uses.

    Built from the typed blueprint's ``Source`` (docs/BLUEPRINT_MODEL.md) by ``from_blueprint``;
    tests construct it directly.
    """

    name: str
    root: Path
    formats: tuple[str, ...] = ("markdown", "text")
    sensitivity: str = "internal"
    acl: tuple[str, ...] = ()
    acl_from: str = "frontmatter"

    @property
    def sensitive(self) -> bool:
        return self.sensitivity in ("confidential", "restricted")

    @classmethod
    def from_blueprint(cls, bp: Blueprint, source: Any) -> SourceSpec:
        return cls(
            name=source.name,
            root=Path(bp.resolve_path(source.path)),
            formats=tuple(source.formats or ("markdown", "text")),
            sensitivity=source.sensitivity,
            acl=tuple(source.acl or ()),
            acl_from=source.acl_from or "frontmatter",
        )


def split_front_matter(raw: str) -> tuple[dict[str, Any] | None, str]:
    """(front matter mapping or None, body). Raises ValueError on malformed front matter,
    because a typo there may be the document's ACL."""
    m = _FRONT_MATTER.match(raw)
    if not m:
        return None, raw
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not valid YAML ({exc.__class__.__name__})") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ValueError("front matter is not a mapping")
    return meta, raw[m.end() :]


def _acl_value(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: acl must be a non-empty list of group names")
    groups = []
    for g in value:
        try:
            groups.append(validate_group(g))
        except InvalidGroup as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return tuple(sorted(set(groups)))


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    for fmt, exts in FORMAT_EXTENSIONS.items():
        if name.endswith(exts):
            return fmt
    return None


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError as exc:
        raise _Skip("PDF support needs pypdf (pip install pypdf)") from exc
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise _Skip("PDF is encrypted")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except _Skip:
        raise
    except Exception as exc:  # pypdf raises many types for damaged files
        raise _Skip(f"unreadable PDF ({type(exc).__name__})") from exc


class _Skip(Exception):
    """Internal: this file is skipped with the message as reason."""


def _title_from(body: str, fallback: str) -> str:
    for line in body.splitlines():
        s = line.strip()
        if s.startswith("#"):
            return s.lstrip("#").strip() or fallback
        if s:
            break
    return fallback


def _normalise(text: str) -> str:
    return " ".join(text.split())


def read_source(
    source: SourceSpec,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    seen_hashes: dict[str, str] | None = None,
    seen_ids: set[str] | None = None,
) -> ReadResult:
    """Read every file below ``source.root``; never raises for a single bad file.

    ``seen_hashes`` (normalised text hash -> doc id) and ``seen_ids`` are shared across sources
    so duplicates and id clashes are caught blueprint-wide.
    """
    result = ReadResult()
    seen_hashes = {} if seen_hashes is None else seen_hashes
    seen_ids = set() if seen_ids is None else seen_ids
    root = source.root
    if not root.is_dir():
        result.errors.append(
            DocumentError(str(root), f"source {source.name!r}: folder does not exist")
        )
        return result
    files = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    for path in files:
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # hidden files and folders (.git, editor swap files)
        if rel.endswith(SIDECAR_SUFFIX):
            continue  # read together with its document
        display = f"{source.name}:{rel}"
        fmt = _format_of(path)
        if fmt is None:
            result.skipped.append(Skipped(display, f"unsupported file type {path.suffix or '?'}"))
            continue
        if fmt not in source.formats:
            result.skipped.append(Skipped(display, f"format {fmt!r} not enabled for this source"))
            continue
        try:
            doc = _read_one(source, path, rel, fmt, max_bytes)
        except _Skip as exc:
            result.skipped.append(Skipped(display, str(exc)))
            continue
        except ValueError as exc:
            result.errors.append(DocumentError(display, str(exc)))
            continue
        if doc.doc_id in seen_ids:
            result.errors.append(
                DocumentError(display, f"document id {doc.doc_id!r} is used by another file")
            )
            continue
        digest = hashlib.sha256(_normalise(doc.text).encode("utf-8")).hexdigest()
        if digest in seen_hashes:
            result.skipped.append(Skipped(display, f"duplicate content of {seen_hashes[digest]!r}"))
            continue
        seen_hashes[digest] = doc.doc_id
        seen_ids.add(doc.doc_id)
        result.documents.append(doc)
    return result


def _read_one(source: SourceSpec, path: Path, rel: str, fmt: str, max_bytes: int) -> Document:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _Skip(f"unreadable ({exc.strerror or type(exc).__name__})") from exc
    if size > max_bytes:
        raise _Skip(f"too large ({size} bytes > {max_bytes})")
    if fmt == "pdf":
        raw = _read_pdf(path)
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise _Skip(f"unreadable ({exc.strerror or type(exc).__name__})") from exc
        if b"\x00" in data[:8192]:
            raise _Skip("binary file (NUL bytes)")
        try:
            raw = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _Skip(f"not UTF-8 (invalid byte at offset {exc.start})") from exc

    meta, body = split_front_matter(raw) if fmt != "pdf" else (None, raw)
    if not body.strip() or len(_normalise(body)) < MIN_TEXT_CHARS:
        raise _Skip("empty (no text)")

    sidecar_path = path.with_name(path.name.rsplit(".", 1)[0] + SIDECAR_SUFFIX)
    sidecar: dict[str, Any] | None = None
    if sidecar_path.is_file():
        try:
            loaded = yaml.safe_load(sidecar_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(
                f"sidecar {sidecar_path.name} is unreadable ({type(exc).__name__})"
            ) from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"sidecar {sidecar_path.name} is not a mapping")
        sidecar = loaded

    fm_acl = _acl_value(meta["acl"], "front matter") if meta and "acl" in meta else None
    sc_acl = _acl_value(sidecar["acl"], sidecar_path.name) if sidecar and "acl" in sidecar else None
    if fm_acl is not None and sc_acl is not None and fm_acl != sc_acl:
        raise ValueError(
            f"front matter acl {list(fm_acl)} and {sidecar_path.name} acl {list(sc_acl)} disagree"
        )
    if fm_acl is not None:
        acl, origin = fm_acl, "front-matter"
    elif sc_acl is not None:
        acl, origin = sc_acl, "sidecar"
    elif source.sensitive:
        raise ValueError(
            f"no ACL: source {source.name!r} is {source.sensitivity}, so every document must "
            f"declare acl in front matter or {path.name.rsplit('.', 1)[0]}{SIDECAR_SUFFIX}"
        )
    elif source.acl:
        acl, origin = _acl_value(list(source.acl), f"source {source.name!r}"), "source-default"
    else:
        raise ValueError(
            f"no ACL: the document declares none and source {source.name!r} has no default acl"
        )

    info: dict[str, Any] = {**(sidecar or {}), **(meta or {})}
    doc_id = rel.rsplit(".", 1)[0] if "." in Path(rel).name else rel
    title = str(info.get("title") or _title_from(body, Path(rel).stem.replace("-", " ")))
    return Document(
        doc_id=doc_id,
        source=source.name,
        path=path,
        rel_path=rel,
        title=title,
        text=body.strip("\n"),
        acl=acl,
        acl_origin=origin,
        format=fmt,
        owner=str(info.get("owner") or ""),
        effective=str(info.get("effective") or ""),
    )


def read_sources(
    sources: Iterable[SourceSpec], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> ReadResult:
    """Read several sources; duplicates and id clashes are detected across all of them."""
    total = ReadResult()
    hashes: dict[str, str] = {}
    ids: set[str] = set()
    for source in sources:
        part = read_source(source, max_bytes=max_bytes, seen_hashes=hashes, seen_ids=ids)
        total.documents += part.documents
        total.skipped += part.skipped
        total.errors += part.errors
    return total


def sources_from_blueprint(bp: Blueprint) -> list[SourceSpec]:
    return [SourceSpec.from_blueprint(bp, s) for s in bp.retrieval.sources]


def acl_summary(docs: Sequence[Document]) -> dict[str, int]:
    """Documents per ACL group (what ``ingest`` reports so a reviewer sees who reads what)."""
    counts: dict[str, int] = {}
    for d in docs:
        for g in d.acl:
            counts[g] = counts.get(g, 0) + 1
    return dict(sorted(counts.items()))
