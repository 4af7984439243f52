"""The audit trail: one JSON line per request, durable before the caller sees the answer.

Why these mechanics:
- One ``os.write`` of a whole line on an ``O_APPEND`` descriptor: the kernel positions and copies
  the line in one step, so concurrent writers (threads, or several gateway processes on one file)
  never interleave, and a process killed at any instant leaves whole lines only.
- ``fsync`` before the response completes: an answer the caller saw has a record on disk. Threads
  commit as a group (one ``fsync`` covers every line written before it), so 32 concurrent requests
  cost about one disk flush, not 32 in a row.
- Rotation by size (``audit.jsonl`` → ``.1`` … ``.N``) under the same lock as writes.
- Records are built from an allow-list of fields (``AuditRecord``); nothing from headers is
  copied, so a token or an Authorization header cannot end up here by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class AuditRecord:
    """The fields of one audit line (the only ones that can ever be written)."""

    request_id: str
    time: str
    endpoint: str
    outcome: str
    status: int
    subject: str | None = None
    groups: list[str] = field(default_factory=list)
    question_sha256: str | None = None
    question: str | None = None
    cited_doc_ids: list[str] = field(default_factory=list)
    cited_chunks: list[dict[str, str]] = field(
        default_factory=list
    )  # {doc_id, chunk_id, chunk_hash}
    blueprint_hash: str = ""
    engine_hash: str = ""
    index_hash: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    error: str | None = None

    def to_line(self) -> bytes:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return (json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


class AuditLog:
    """Thread-safe append-only JSONL writer with group commit and size rotation."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int, backups: int, fsync: bool = True
    ):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self._do_fsync = fsync
        self._lock = threading.Lock()  # guards the fd, the size and rotation
        self._sync_lock = threading.Lock()  # one fsync at a time; later waiters reuse it
        self._written = 0  # lines written to the current fd (monotonic across rotations)
        self._synced = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, record: AuditRecord) -> None:
        """Append one record and return once it is on disk (or in the kernel with fsync off)."""
        line = record.to_line()
        with self._lock:
            if self._size > 0 and self._size + len(line) > self.max_bytes:
                self._rotate()
            written = os.write(self._fd, line)
            if written != len(line):  # only on a full disk; fail loudly rather than lose the tail
                raise OSError(f"audit log: short write ({written} of {len(line)} bytes)")
            self._size += written
            self._written += 1
            mine = self._written
        if self._do_fsync:
            self._sync(mine)

    def _sync(self, mine: int) -> None:
        with self._sync_lock:
            if self._synced >= mine:
                return  # another thread's fsync already covered this line
            target = self._written  # every line counted here was written before this read
            os.fsync(self._fd)
            self._synced = max(self._synced, target)

    def _rotate(self) -> None:
        # Called with self._lock held; taking _sync_lock too means no fsync runs on an fd we close.
        with self._sync_lock:
            os.fsync(self._fd)
            self._synced = self._written
            os.close(self._fd)
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._fd = self._open()
            self._size = 0

    def close(self) -> None:
        with self._lock, self._sync_lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse an audit file line by line (tests and ``llmctl verify`` compliance evidence)."""
    records = []
    with open(path, encoding="ascii") as fh:
        for line in fh:
            records.append(json.loads(line))
    return records
