"""The audit trail: one JSON line per request, durable before the caller sees the answer.

Why these mechanics:
- One ``os.write`` of a whole line on an ``O_APPEND`` descriptor: the kernel positions and copies
  the line in one step, so concurrent writers (threads, or several gateway processes on one file)
  never interleave, and a process killed at any instant leaves whole lines only.
- ``fsync`` before the response completes: an answer the caller saw has a record on disk. Threads
  commit as a group (one ``fsync`` covers every line written before it), so 32 concurrent requests
  cost about one disk flush, not 32 in a row.
- Rotation by size under the same lock as writes: the full file moves into the archive, where
  it is compressed and kept for the blueprint's retention (``llmctl.gateway.audit_archive``).
- A write that fails (disk full, file made immutable) raises ``AuditUnavailable``: the caller
  refuses the request with 503 rather than answer without a record; the next write or readiness
  probe retries on a fresh descriptor, so the sink recovers without a restart.
- Records are built from an allow-list of fields (``AuditRecord``); nothing from headers is
  copied, so a token or an Authorization header cannot end up here by accident.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmctl.gateway.audit_archive import AuditArchive

log = logging.getLogger("llmctl.gateway")


#: The ``prev`` of a trail's first record.
GENESIS = "0" * 64


def line_hash(line: bytes) -> str:
    """The chain's link: SHA-256 of one whole line as written, newline included."""
    return hashlib.sha256(line).hexdigest()


def _repair_tail(fd: int, path: Path) -> int:
    """Cut a torn last line (a crash mid-write, a short write whose truncation failed) so the
    next record starts a line of its own; returns the file's size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return size
    with open(path, "rb") as fh:  # the log's own descriptor is write-only
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return size
        pos, keep = size, 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            cut = fh.read(step).rfind(b"\n")
            if cut >= 0:
                keep = pos + cut + 1
                break
    os.ftruncate(fd, keep)
    log.warning("audit log %s: cut a torn last line of %d bytes", path, size - keep)
    return keep


def last_line(path: Path) -> bytes | None:
    """The last whole line of a plain file (read from the end), None when it has none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            pos, tail = end, b""
            while pos > 0:
                step = min(65536, pos)
                pos -= step
                fh.seek(pos)
                tail = fh.read(step) + tail
                body = tail[:-1] if tail.endswith(b"\n") else tail
                cut = body.rfind(b"\n")
                if cut >= 0 or pos == 0:
                    line = body[cut + 1 :] + b"\n"
                    return line if line.strip() else None
    except OSError:
        return None
    return None


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
    question_hmac: str | None = None  # HMAC-SHA256 under the ring's key (gateway/questionkeys.py)
    question_key_id: str | None = None
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
    # "intent": written before the first byte of a streamed answer; its completion record follows
    stage: str | None = None
    client: str | None = None  # the caller's address, on records of unauthenticated requests
    suppressed: int | None = None  # refusals from ``client`` counted but not recorded before this
    # the grounding check of an answer: outcome (grounded | replaced | ungrounded), mode, score,
    # how many spans were unsupported, which chunks were quoted (llmctl.gateway.grounding)
    grounding: dict[str, Any] | None = None
    finish_reason: str | None = None  # the model's, for answers: "stop" or "length" (truncated)
    revision: str | None = None  # the revision that answered (llmctl.rollout.revisions)
    # SHA-256 of the line before this one in the trail (GENESIS for the first): set by AuditLog,
    # so a record removed or edited breaks the chain (``llmctl audit verify``)
    prev: str | None = None

    def to_line(self) -> bytes:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return (json.dumps(data, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


class AuditUnavailable(Exception):
    """The audit sink cannot take a record right now (full, read-only, immutable, gone).

    With audit required the gateway answers 503 naming the sink instead of answering without a
    record; ``str()`` is safe to show a caller (a path and the kernel's reason, nothing else).
    """


class AuditLog:
    """Thread-safe append-only JSONL writer: group commit, archive rotation, retention.

    While the sink fails, ``failing`` holds the reason; every write retries on a fresh
    descriptor (an operator who frees the disk or clears the flag needs no restart), and
    ``probe`` does the same for readiness checks, at most once a second, leaving a
    ``sink_recovered`` record that says how many writes failed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int,
        backups: int,
        fsync: bool = True,
        retention_days: int = 0,
    ):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        self.retention_days = max(0, int(retention_days or 0))
        self.archive = AuditArchive(self.path, self.retention_days, self.backups)
        self._do_fsync = fsync
        self._lock = threading.Lock()  # guards the fd, the size and rotation
        self._sync_lock = threading.Lock()  # one fsync at a time; later waiters reuse it
        self._written = 0  # lines written to the current fd (monotonic across rotations)
        self._synced = 0
        self.failing: str | None = None  # why the last write failed; None while healthy
        self.failed_writes = 0  # since the sink last worked
        self._failures = 0  # failure generation: a write recovers only what it saw fail
        self._sync_failed_upto = 0  # lines a failed fsync covered: never reported durable
        self._failing_since = ""
        self._last_probe = float("-inf")
        self._compressor: threading.Thread | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = _repair_tail(self._fd, self.path)
        self.archive.recover()
        self._last = self._tail_hash()

    def _tail_hash(self) -> str:
        """Where the chain goes on after a restart: the hash of the trail's last line (the live
        file's, else the newest archived file's), GENESIS for a new trail."""
        last = last_line(self.path)
        if last is not None:
            return line_hash(last)
        return self.archive.tail_hash() or GENESIS

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, record: AuditRecord) -> None:
        """Append one record and return once it is on disk (or in the kernel with fsync off).

        Raises ``AuditUnavailable`` when the line is not durably written; a partial line (a
        disk that filled mid-write) is cut off again, so the trail keeps whole lines only.
        """
        rotated: Path | None = None
        with self._lock:
            seen_failures = self._failures
            record.prev = self._last  # the chain: serialised by the lock, like the file itself
            line = record.to_line()
            try:
                if self.failing is not None or self._fd < 0:
                    self._reopen()
                if self._size > 0 and self._size + len(line) > self.max_bytes:
                    rotated = self._rotate()
                written = os.write(self._fd, line)
                if written != len(line):
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, self._size)
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            except OSError as exc:
                raise self._failed(exc) from exc
            self._size += written
            self._written += 1
            self._last = line_hash(line)
            mine = self._written
        if rotated is not None:
            self._compress_later(rotated)
        if self._do_fsync:
            try:
                self._sync(mine)
            except OSError as exc:
                with self._lock:
                    raise self._failed(exc) from exc
        if self.failing is not None:
            with self._lock:
                if self._failures == seen_failures:  # no newer failure than the one it saw
                    self._recovered()

    def probe(self) -> tuple[bool, str]:
        """(healthy, why not) for readiness; while failing, retries the sink (once a second) by
        writing the ``sink_recovered`` record on a fresh descriptor: healthy only if that
        record is durable."""
        if self.failing is None:
            return True, ""
        now = time.monotonic()
        if now - self._last_probe < 1.0:
            return False, self.failing
        self._last_probe = now
        with self._lock:
            if self.failing is None:
                return True, ""
            try:
                self._reopen()
            except OSError as exc:
                self._failed(exc)
                return False, self.failing or "audit sink failing"
            if not self._recovered(require_marker=True):
                return False, self.failing or "audit sink failing"
        return True, ""

    def _failed(self, exc: OSError) -> AuditUnavailable:
        # Called with self._lock held.
        reason = exc.strerror or str(exc)
        if self.failing is None:
            self._failing_since = utc_now_iso()
            log.error("audit sink %s failing: %s", self.path, reason)
        self.failing = f"audit sink {self.path}: {reason}"
        self.failed_writes += 1
        self._failures += 1
        return AuditUnavailable(self.failing)

    def _recovered(self, require_marker: bool = False) -> bool:
        """Called with self._lock held. Leaves the failing state with a ``sink_recovered``
        record that says how many writes failed. After a durable write of a request's record the
        sink works, so the marker is best effort; for a probe, the marker is the test.
        True: no longer failing."""
        if self.failing is None:
            return True
        marker = AuditRecord(
            request_id=uuid.uuid4().hex,
            time=utc_now_iso(),
            endpoint="audit",
            outcome="sink_recovered",
            status=0,
            error=f"{self.failed_writes} write(s) failed since {self._failing_since}",
            prev=self._last,
        )
        line = marker.to_line()
        wrote = False
        with self._sync_lock:
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, self._size)
                    raise OSError(errno.ENOSPC, "short write")
                self._size += written
                self._written += 1
                self._last = line_hash(line)
                if self._do_fsync:
                    os.fsync(self._fd)
                    self._synced = self._written
                wrote = True
            except OSError as exc:
                if require_marker:
                    self._failed(exc)
                    return False
        log.warning(
            "audit sink %s works again after %d failed write(s)%s",
            self.path,
            self.failed_writes,
            "" if wrote else " (its sink_recovered record could not be written)",
        )
        self.failing = None
        self.failed_writes = 0
        return True

    def _reopen(self) -> None:
        with self._sync_lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = -1
            self._fd = self._open()
            self._size = _repair_tail(self._fd, self.path)

    def _sync(self, mine: int) -> None:
        with self._sync_lock:
            if mine <= self._sync_failed_upto:
                # an fsync covering this line failed; Linux reports that once per file, so a
                # later fsync saying 0 would not make it durable
                raise OSError(errno.EIO, "an earlier fsync of this record failed")
            if self._synced >= mine:
                return  # another thread's fsync already covered this line
            target = self._written  # every line counted here was written before this read
            try:
                os.fsync(self._fd)
            except OSError:
                self._sync_failed_upto = max(self._sync_failed_upto, target)
                raise
            self._synced = max(self._synced, target)

    def _rotate(self) -> Path:
        # Called with self._lock held; taking _sync_lock too means no fsync runs on an fd we close.
        with self._sync_lock:
            os.fsync(self._fd)
            self._synced = self._written
            os.close(self._fd)
            self._fd = -1
            rotated = self.archive.take(self.path)
            self._fd = self._open()
            self._size = 0
        return rotated

    def _compress_later(self, rotated: Path) -> None:
        # Compressing 50 MB takes about a second: off the request's path, one at a time.
        previous = self._compressor
        if previous is not None:
            previous.join()
        self._compressor = threading.Thread(
            target=self.archive.seal, args=(rotated,), name="audit-archive", daemon=True
        )
        self._compressor.start()

    def flush_archive(self) -> None:
        """Wait for a rotated file's compression to finish (tests, shutdown)."""
        if self._compressor is not None:
            self._compressor.join()

    def close(self) -> None:
        self.flush_archive()
        with self._lock, self._sync_lock:
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse one audit file (plain or gzip-compressed) line by line."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    records = []
    with opener(p, "rt", encoding="ascii") as fh:
        for line in fh:
            records.append(json.loads(line))
    return records


def trail_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file of one audit trail, oldest first: the archive (sealed ``.jsonl.gz`` files and
    any not yet sealed), rotated files of the older ``audit.jsonl.N`` scheme, then the live file."""
    p = Path(path)
    files = AuditArchive(p).files()

    def suffix(f: Path) -> int:
        tail = f.name.rsplit(".", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    legacy = sorted((f for f in p.parent.glob(p.name + ".*") if suffix(f) > 0), key=suffix)
    # the numbered files predate the archive (an upgraded gateway): oldest first, .N before .1
    return list(reversed(legacy)) + files + ([p] if p.is_file() else [])


def iter_trail(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every record of one trail, oldest first, one at a time (an audit read over years of
    records must not hold them all). A file sealed away between listing and reading is read
    from its new name; a line that does not parse (a torn tail) is skipped."""
    seen: set[str] = set()
    for _ in range(3):
        try:
            for f in trail_files(path):
                stem = f.name.removesuffix(".gz")
                if stem in seen:
                    continue
                opener = gzip.open if f.suffix == ".gz" else open
                with opener(f, "rb") as fh:
                    for line in fh:
                        with contextlib.suppress(ValueError):
                            yield json.loads(line)
                if f != Path(path):
                    seen.add(stem)
            return
        except FileNotFoundError:
            continue  # rotated or sealed meanwhile: list again, skipping what was read


def read_trail(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of one audit trail, oldest first (see ``trail_files``)."""
    records: list[dict[str, Any]] = []
    for f in trail_files(path):
        records += read_records(f)
    return records
