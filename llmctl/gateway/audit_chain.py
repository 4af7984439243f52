"""Checking the audit trail's hash chain: every record carries ``prev``, the SHA-256 of the line
before it (``GENESIS`` for a trail's first), written by ``AuditLog`` under its lock.

Why a chain: an append-only file is only as trustworthy as whoever can write to its folder. With
the chain, a record removed from or edited in the middle of the trail breaks the link of the
record after it, and ``verify_trail`` names that place; the chain runs across rotation (the first
line of a new file links to the last line of the one archived before it) and across retention
(the manifest keeps the hash of a deleted file's last line, so the oldest remaining record still
has an anchor). Sealed files are also checked against the archive manifest's SHA-256.

What a chain cannot show by itself: an edit of the newest record, or a truncated tail. The
report's ``head`` (the hash of the last line) is what to note elsewhere; ``verify_trail(head=)``
then proves nothing was changed or cut before that point.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.gateway.audit import GENESIS, line_hash, trail_files
from llmctl.gateway.audit_archive import AuditArchive


@dataclass(frozen=True)
class ChainReport:
    """The result of ``llmctl audit verify``: ok, or the first break and where it is."""

    audit_file: Path
    ok: bool
    records: int
    files: int
    head: str  # hash of the trail's last line (note it elsewhere to anchor the newest record)
    problem: str | None = None
    unchained: int = 0  # records written before the chain existed (older gateways)

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_file": str(self.audit_file),
            "ok": self.ok,
            "records": self.records,
            "files": self.files,
            "head": self.head,
            "problem": self.problem,
            "unchained": self.unchained,
        }

    def summary(self) -> list[str]:
        if not self.ok:
            return [f"audit trail broken: {self.problem}"]
        older = f"; {self.unchained} older records carry no link" if self.unchained else ""
        return [
            f"audit trail intact: {self.records} records in {self.files} files, every link "
            f"matches{older}",
            f"head {self.head} (note it elsewhere: `llmctl audit verify --head` then proves "
            "nothing before it changed)",
        ]


def _lines(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield from fh


def verify_trail(path: str | Path, head: str | None = None) -> ChainReport:
    """Walk the whole trail of ``path`` oldest first and report the first break (if any)."""
    path = Path(path)
    archive = AuditArchive(path)
    files = trail_files(path)
    records = unchained = 0
    expected: str | None = None  # the hash the next record's prev must carry
    anchors = archive.anchors() | {GENESIS}
    last = GENESIS

    def broken(problem: str) -> ChainReport:
        return ChainReport(path, False, records, len(files), last, problem, unchained)

    sealed = archive.verify()
    if sealed:
        return broken(f"archive {archive.dir}: {sealed[0]}")
    seen_head = head is None
    for f in files:
        for number, line in enumerate(_lines(f), 1):
            where = f"{f.name} line {number}"
            try:
                rec = json.loads(line)
            except ValueError:
                return broken(f"{where} is not a JSON record (edited or cut)")
            records += 1
            prev = rec.get("prev") if isinstance(rec, dict) else None
            rid = rec.get("request_id", "?") if isinstance(rec, dict) else "?"
            if prev is None:
                if expected is not None:
                    return broken(f"{where} (request {rid}) has no link to the record before it")
                unchained += 1
            elif expected is None:
                if prev not in anchors and not (unchained and prev == last):
                    return broken(
                        f"{where} (request {rid}), the oldest record, links to a record that is "
                        "not in the trail: records before it were removed"
                    )
            elif prev != expected:
                return broken(
                    f"{where} (request {rid}): its link does not match the record before it; "
                    "that record was edited, or records between them were removed"
                )
            last = line_hash(line)
            expected = last if prev is not None or expected is not None else None
            seen_head = seen_head or last == head
    if not seen_head:
        return broken(f"head {head} is not in the trail: the records up to it were changed or cut")
    return ChainReport(path, True, records, len(files), last, None, unchained)
