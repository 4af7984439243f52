"""SHA-256 of files, read in 1 MiB blocks: the one helper behind every content hash llmctl
writes into a manifest (engine caches, the audit archive, backups)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
