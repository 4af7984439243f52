"""The audit trail's archive: rotated files sealed (gzip plus a manifest of hashes), kept for the
blueprint's retention and never deleted before it.

Why an archive rather than numbered backups: the old ``audit.jsonl.1 … .10`` scheme deleted the
oldest file by count, about 1.1 GB in all, while a compliance blueprint asks for seven years
(``requirements.audit.retentionDays``). Here a rotated file is moved into ``<stem>-archive/``
under the lock (a rename: the writer never waits for compression), then compressed in the
background, fsynced, and recorded in ``MANIFEST.jsonl`` with its SHA-256, record count and the
times of its first and last record. A file is deleted only when its *newest* record is older
than the retention; with no retention required, the newest ``keep`` files are kept as before.
Every deletion is a manifest line too, so what left the archive, and why, stays on record.

A process killed between the rename and the seal leaves a plain ``.jsonl`` in the archive;
``recover`` seals it at the next start, so nothing is lost and nothing is sealed twice.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from llmctl.digest import sha256_file

log = logging.getLogger("llmctl.gateway")

MANIFEST = "MANIFEST.jsonl"
#: Bytes of one audit record as written (measured on this gateway's records: 600-900 B).
RECORD_BYTES = 900
#: Compressed size over raw size of sealed files (measured: about 0.1; pessimistic on purpose).
GZIP_RATIO = 0.25


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class AuditArchive:
    """The sealed history of one audit file (``audit.jsonl`` → ``audit-archive/``)."""

    def __init__(self, live: Path, retention_days: int = 0, keep: int = 10) -> None:
        self.live = live
        self.dir = live.parent / f"{live.stem}-archive"
        self.manifest = self.dir / MANIFEST
        self.retention_days = retention_days
        self.keep = max(1, keep)
        self._lock = threading.Lock()  # one seal or expiry at a time

    # -- writing -------------------------------------------------------------------------------
    def take(self, live: Path) -> Path:
        """Move the live file into the archive, unsealed (called under the writer's lock)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.dir / f"{live.stem}-{stamp}.jsonl"
        os.replace(live, dest)
        return dest

    def seal(self, raw: Path) -> None:
        """Compress one archived file, record it in the manifest, then apply the retention."""
        with self._lock:
            try:
                self._seal(raw)
            except OSError as exc:  # the plain file stays; recover() seals it at the next start
                log.error("audit archive: cannot seal %s: %s", raw.name, exc)
                return
            self._expire()

    def _seal(self, raw: Path) -> None:
        count, first, last, tail = 0, "", "", b""
        with open(raw, "rb") as fh:
            for line in fh:
                count += 1
                stamp = _record_time(line)
                first = first or stamp
                last = stamp or last
                tail = line
        gz = raw.with_name(raw.name + ".gz")
        tmp = gz.with_name(gz.name + ".tmp")
        with open(raw, "rb") as src, open(tmp, "wb") as out:
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as z:
                shutil.copyfileobj(src, z, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, gz)
        entry = {
            "file": gz.name,
            "sha256": sha256_file(gz),
            "records": count,
            "first_time": first,
            "last_time": last,
            "raw_bytes": raw.stat().st_size,
            "bytes": gz.stat().st_size,
            "sealed_at": _now_iso(),
            # the chain's link to the next file: kept in the manifest, so the chain can still
            # be checked from here on once this file is deleted for retention
            "last_sha256": hashlib.sha256(tail).hexdigest() if tail else "",
        }
        self._append(entry)
        raw.unlink()

    def _append(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _expire(self) -> None:
        """Delete sealed files past the retention (or beyond ``keep`` when none is set)."""
        sealed = [e for e in self.entries() if (self.dir / e["file"]).is_file()]
        if self.retention_days > 0:
            cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
            expired = [e for e in sealed if (t := _parse_time(e.get("last_time"))) and t < cutoff]
            reason = f"older than the retention of {self.retention_days} days"
        else:
            expired = sealed[: max(0, len(sealed) - self.keep)]
            reason = f"beyond the newest {self.keep} files (no retention required)"
        for e in expired:
            with contextlib.suppress(FileNotFoundError):
                (self.dir / e["file"]).unlink()
            self._append(
                {
                    "file": e["file"],
                    "deleted_at": _now_iso(),
                    "reason": reason,
                    "last_sha256": e.get("last_sha256", ""),
                }
            )

    def recover(self) -> None:
        """Seal what a killed process left unsealed (at start, before any rotation)."""
        for raw in self._unsealed():
            self.seal(raw)
        for tmp in self.dir.glob("*.gz.tmp") if self.dir.is_dir() else ():
            tmp.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------------
    def entries(self) -> list[dict[str, Any]]:
        """The manifest's sealed files, oldest first, minus those deleted since."""
        try:
            lines = self.manifest.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []
        sealed: dict[str, dict[str, Any]] = {}
        for line in lines:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if "deleted_at" in e:
                    sealed.pop(e.get("file", ""), None)
                elif "sha256" in e:
                    sealed[e["file"]] = e
        return list(sealed.values())

    def _unsealed(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob(f"{self.live.stem}-*.jsonl"))

    def files(self) -> list[Path]:
        """Archived files in order, sealed or not yet sealed (names sort by rotation time)."""
        sealed = [self.dir / e["file"] for e in self.entries()]
        return sorted(
            [p for p in sealed if p.is_file()] + self._unsealed(),
            key=lambda p: p.name.removesuffix(".gz"),
        )

    def tail_hash(self) -> str:
        """The hash of the archive's newest line ('' when the archive is empty)."""
        files = self.files()
        if not files:
            return ""
        newest = files[-1]
        if newest.suffix != ".gz":  # not sealed yet (a crash): read its last line
            with open(newest, "rb") as fh:
                tail = b""
                for line in fh:
                    tail = line
            return hashlib.sha256(tail).hexdigest() if tail else ""
        for e in reversed(self.entries()):
            if e["file"] == newest.name:
                return str(e.get("last_sha256", ""))
        return ""

    def anchors(self) -> set[str]:
        """Hashes a trail may start from: the last lines of files deleted for retention."""
        try:
            lines = self.manifest.read_text(encoding="utf-8").splitlines()
        except OSError:
            return set()
        out = set()
        for line in lines:
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if "deleted_at" in e and e.get("last_sha256"):
                    out.add(str(e["last_sha256"]))
        return out

    def verify(self) -> list[str]:
        """Sealed files whose bytes no longer match the manifest (empty: all intact)."""
        problems = []
        for e in self.entries():
            p = self.dir / e["file"]
            if not p.is_file():
                problems.append(f"{e['file']}: missing")
            elif sha256_file(p) != e["sha256"]:
                problems.append(f"{e['file']}: sha256 differs from the manifest")
        return problems


def _record_time(line: bytes) -> str:
    try:
        return str(json.loads(line).get("time") or "")
    except ValueError:
        return ""


def retention_bytes(retention_days: int, records_per_day: int) -> int:
    """What the archive needs to hold the retention at the blueprint's traffic (pessimistic)."""
    return int(retention_days * records_per_day * RECORD_BYTES * GZIP_RATIO)


def capacity_problem(live: Path, retention_days: int, records_per_day: int) -> str | None:
    """Why the audit folder cannot hold what retention requires, or None when it can.

    Counts what is free plus what the trail already occupies (it is part of what retention
    needs); a missing traffic figure or retention means there is nothing to check.
    """
    if retention_days <= 0 or records_per_day <= 0:
        return None
    need = retention_bytes(retention_days, records_per_day)
    folder = live.parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    held = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    if free + held >= need:
        return None
    return (
        f"the audit folder {folder} has {_gb(free + held)} for the audit trail, but keeping "
        f"{retention_days} days at {records_per_day} requests a day needs about {_gb(need)}; "
        "free space there, put LLMCTL_HOME on a larger volume, or correct "
        "requirements.audit.retentionDays / users.requestsPerDay"
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"
