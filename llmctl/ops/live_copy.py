"""Consistent copies of a live stack's index and audit trail, for ``llmctl backup``.

Consistency without stopping anything: ``llmctl ingest`` does not take the stack's lock (an
ingest runs for minutes while the watchdog must stay able to restart a component), so the index
is copied at one table version instead. LanceDB never rewrites a committed file, each version is
one manifest under ``_versions/``, and the manifests (and transaction files) of later versions
are left out of the copy, so the copy opens at that version whatever commits meanwhile. An
ingest writes the index's ``manifest.json`` (its index_hash) only after its commits, so the
copy's content hash is recomputed and must equal that index_hash, else the copy is retried.

The audit file is appended to while the gateway runs: JSONL files are copied up to their last
newline (a writer may be halfway through a line), sealed archive files whole, and a rotation or
a seal during the copy (the set of files or an inode changes) makes the copy start again, so the
copy never misses or doubles a rotated file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError

INDEX_ATTEMPTS = 10
AUDIT_ATTEMPTS = 5
_U64 = (1 << 64) - 1


class BackupError(LlmctlError):
    """A backup cannot be written, or a restore refuses (the message names the file or folder)."""


def _copy_lines(src: Path, dst: Path) -> int:
    """Copy ``src`` up to its last newline (a writer may be halfway through a line); returns the
    number of lines copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fh:
        data = fh.read()
    cut = data.rfind(b"\n") + 1
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data[:cut])
    return data.count(b"\n", 0, cut)


# -- the index ------------------------------------------------------------------------------------
def _manifest_version(name: str) -> int | None:
    """A LanceDB version from a ``_versions/`` file name (both naming schemes), else None."""
    stem, _, suffix = name.partition(".")
    if suffix != "manifest" or not stem.isdigit():
        return None
    n = int(stem)
    return _U64 - n if n > (1 << 63) else n  # the V2 scheme names version v as u64::MAX - v


def _latest_version(table_dir: Path) -> int:
    found = [_manifest_version(p.name) for p in (table_dir / "_versions").glob("*.manifest")]
    versions = [v for v in found if v is not None]
    if not versions:
        raise BackupError(f"{table_dir}: no LanceDB version manifest; is this an llmctl index?")
    return max(versions)


def _copy_table(src: Path, dst: Path, version: int) -> None:
    """Copy the table as of ``version``: later version manifests, their transaction files and the
    latest-version hint are left out (data files are immutable; orphans are harmless)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        base = Path(folder).name
        skip = set()
        for n in names:
            if base == "_versions":
                v = _manifest_version(n)
                if n == "latest_version_hint.json" or (v is not None and v > version):
                    skip.add(n)
            elif base == "_transactions":  # "<read version>-<uuid>.txn"
                head = n.split("-", 1)[0]
                if head.isdigit() and int(head) >= version:
                    skip.add(n)
        return skip

    shutil.copytree(src, dst, ignore=ignore)


def _table_hash(index_dir: Path, manifest: dict[str, Any]) -> str | None:
    """The content hash of the copied index as ``llmctl ingest`` computes it (None when the
    manifest predates the model id in its signature)."""
    from llmctl.retrieval.index import ChunkIndex, table_content_hash

    model_id = str((manifest.get("signature") or {}).get("model_id") or "")
    if not model_id:
        return None
    index = ChunkIndex.open(index_dir, refresh_s=None)
    return table_content_hash(index.scan(["chunk_id", "chunk_hash", "acl"]), model_id, index.dim)


def copy_index(src: Path, dst: Path) -> dict[str, Any]:
    """Copy one consistent version of the index (see the module docstring); returns its
    index_hash and table version."""
    from llmctl.retrieval.index import MANIFEST, TABLE

    table = f"{TABLE}.lance"
    for _ in range(INDEX_ATTEMPTS):
        shutil.rmtree(dst, ignore_errors=True)
        raw = (src / MANIFEST).read_bytes() if (src / MANIFEST).is_file() else b"{}"
        manifest = json.loads(raw or b"{}")
        version = _latest_version(src / table)
        dst.mkdir(parents=True)
        try:
            _copy_table(src / table, dst / table, version)
        except (FileNotFoundError, shutil.Error):  # a cleanup removed an old file: try again
            time.sleep(0.5)
            continue
        (dst / MANIFEST).write_bytes(raw)
        expected = str(manifest.get("index_hash") or "")
        if _latest_version(dst / table) == version and _table_hash(dst, manifest) in (
            None,
            expected,
        ):
            return {"index_hash": expected, "version": version}
        time.sleep(0.5)  # an ingest committed but has not written manifest.json yet
    shutil.rmtree(dst, ignore_errors=True)
    raise BackupError(
        f"{src}: the index changed during each of {INDEX_ATTEMPTS} attempts to copy it (an "
        "`llmctl ingest` running?); run the backup again when it is done"
    )


# -- the audit trail ------------------------------------------------------------------------------
def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_ino)
        for p in folder.rglob("*")
        if p.is_file()
    )


def copy_audit(live: Path, dst: Path) -> dict[str, Any]:
    """Copy the audit folder (live file, archive, its MANIFEST.jsonl): JSONL files up to their
    last newline, sealed files whole; again from the start when a rotation or a seal happened
    meanwhile (the set of files or the live file's inode changed)."""
    from llmctl.gateway.audit_archive import MANIFEST as ARCHIVE_MANIFEST
    from llmctl.gateway.audit_archive import AuditArchive

    folder = live.parent
    for _ in range(AUDIT_ATTEMPTS):
        shutil.rmtree(dst, ignore_errors=True)
        plain = 0  # records in files not (yet) sealed: the live file, unsealed or legacy ones
        try:
            before = _listing(folder)
            for rel, _ino in before:
                src, out = folder / rel, dst / rel
                if rel.endswith((".tmp", ".lock")):
                    continue  # a seal in progress, or a lock file
                out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if rel.endswith(".jsonl"):  # appended to: whole lines only
                    lines = _copy_lines(src, out)
                else:
                    shutil.copy2(src, out)
                    os.chmod(out, 0o600)
                    lines = 0 if rel.endswith(".gz") else _count_lines(out)
                plain += 0 if src.name == ARCHIVE_MANIFEST else lines
            if _listing(folder) != before:
                continue
        except FileNotFoundError:
            continue
        sealed = sum(int(e.get("records") or 0) for e in AuditArchive(dst / live.name).entries())
        return {"records": sealed + plain, "files": len(before)}
    shutil.rmtree(dst, ignore_errors=True)
    raise BackupError(
        f"{folder}: the audit trail rotated during each of {AUDIT_ATTEMPTS} attempts to copy it; "
        "run the backup again"
    )


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0
