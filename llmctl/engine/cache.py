"""The content-addressed engine cache: an unchanged engine is never rebuilt, a damaged one never served.

Layout (``$LLMCTL_ENGINE_CACHE``, else ``$LLMCTL_CACHE/engines``, else ``~/.cache/llmctl/engines``)::

    <root>/<key>/manifest.json     every input, and the sha256 of every output file (written last)
    <root>/<key>/engine/...        what the builder wrote (rank*.engine, config.json)
    <root>/<key>/tokenizer/...
    <root>/<key>/.last_used        touched on every hit; ``gc --keep N`` keeps the N most recent
    <root>/.build-<key>-XXXX/      a build in progress (or an interrupted one)
    <root>/.locks/<key>.lock       flock held while a key is being built

A build writes into a temporary folder inside the cache and is renamed into place only after its
manifest is written, so a crash leaves a ``.build-*`` folder (cleaned up next time) and never a
half-built entry under the key. An entry whose manifest is missing, or whose files do not hash to
what the manifest says, is removed and rebuilt.

The seam: ``EngineCache.ensure(key, inputs, builder)`` is the ONE place a build happens. The
builder is a plain function ``builder(out_dir, on_progress)`` that writes the engine's files into
``out_dir``; the real one comes from ``llmctl.engine.trtllm.make_builder``, tests pass a fake that
writes small files, so every cache behaviour is exercised without a GPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.digest import sha256_file
from llmctl.errors import BuildError
from llmctl.local.repository import DigestCache, cache_root

ENV_ENGINE_CACHE = "LLMCTL_ENGINE_CACHE"
MANIFEST = "manifest.json"
LAST_USED = ".last_used"
BUILD_PREFIX = ".build-"
MANIFEST_FORMAT = 1

ProgressFn = Callable[[str], None]
Builder = Callable[[Path, ProgressFn], None]


def engine_cache_root() -> Path:
    override = os.environ.get(ENV_ENGINE_CACHE)
    if override:
        return Path(override).expanduser()
    return cache_root() / "engines"


def digest_cache() -> DigestCache:
    """File digests remembered by (path, size, mtime), shared with the local target's cache."""
    return DigestCache(cache_root() / "file-digests.json")


def hash_outputs(root: Path) -> dict[str, str]:
    """relative path -> sha256 for every file under ``root`` except the cache's own bookkeeping."""
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in (MANIFEST, LAST_USED):
            continue
        out[rel] = sha256_file(path)
    return out


def _noop(_: str) -> None:
    pass


@dataclass(frozen=True)
class EngineEntry:
    key: str
    path: Path
    manifest: dict[str, Any]
    built: bool  # False: found valid in the cache

    @property
    def engine_dir(self) -> Path:
        return self.path / "engine"

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"


@dataclass(frozen=True)
class EntryInfo:
    """One row of ``llmctl engines list``."""

    key: str
    path: Path
    state: str  # "ok" | "corrupt" | "partial" | "building"
    size_bytes: int
    created: str | None
    last_used: float
    model: str | None
    gpu_arch: str | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": str(self.path),
            "state": self.state,
            "size_bytes": self.size_bytes,
            "created": self.created,
            "last_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_used)),
            "model": self.model,
            "gpu_arch": self.gpu_arch,
            "detail": self.detail,
        }


class EngineCache:
    """Engines by key; see the module docstring for the layout and the builder seam."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or engine_cache_root()

    def path(self, key: str) -> Path:
        return self.root / key

    # -- verification ----------------------------------------------------------------------
    def verify(self, key: str, *, full: bool = True) -> tuple[str, str]:
        """("ok"|"missing"|"partial"|"corrupt", why). ``full=False`` checks sizes, not hashes."""
        entry = self.path(key)
        if not entry.is_dir():
            return "missing", "not in the cache"
        manifest_path = entry / MANIFEST
        if not manifest_path.is_file():
            return "partial", "manifest.json missing (interrupted or foreign build)"
        try:
            manifest = json.loads(manifest_path.read_text())
            expected: Mapping[str, Mapping[str, Any]] = manifest["outputs"]
        except (ValueError, KeyError, TypeError) as exc:
            return "corrupt", f"manifest.json unreadable: {exc}"
        if manifest.get("key") != key:
            return "corrupt", f"manifest.json is for key {manifest.get('key')!r}"
        present = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()}
        present -= {MANIFEST, LAST_USED}
        missing = sorted(set(expected) - present)
        if missing:
            return "corrupt", f"missing {missing[0]}" + (
                f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            )
        extra = sorted(present - set(expected))
        if extra:
            return "corrupt", f"unexpected file {extra[0]}"
        for rel, meta in expected.items():
            path = entry / rel
            if path.stat().st_size != meta.get("size"):
                return (
                    "corrupt",
                    f"{rel}: size {path.stat().st_size}, manifest says {meta.get('size')}",
                )
            if full and sha256_file(path) != meta.get("sha256"):
                return "corrupt", f"{rel}: sha256 differs from the manifest"
        return "ok", ""

    def lookup(self, key: str) -> EngineEntry | None:
        """The valid entry for ``key`` (fully re-hashed), or None."""
        state, _ = self.verify(key)
        if state != "ok":
            return None
        entry = self.path(key)
        self._touch(entry)
        return EngineEntry(key, entry, json.loads((entry / MANIFEST).read_text()), False)

    # -- building --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure(
        self,
        key: str,
        inputs: Mapping[str, Any],
        builder: Builder,
        on_progress: ProgressFn | None = None,
    ) -> EngineEntry:
        """The valid engine for ``key``: from the cache, or built once by ``builder`` (the seam)."""
        progress = on_progress or _noop
        hit = self.lookup(key)
        if hit is not None:
            progress(f"engine {key} found in the cache")
            return hit
        with self._lock(key):
            hit = self.lookup(key)  # another process may have finished it while we waited
            if hit is not None:
                return hit
            for leftover in self.root.glob(f"{BUILD_PREFIX}{key}-*"):
                progress(f"removing an interrupted build: {leftover.name}")
                shutil.rmtree(leftover, ignore_errors=True)
            final = self.path(key)
            if final.exists():
                state, why = self.verify(key)
                progress(f"engine {key} is {state} ({why}); rebuilding")
                shutil.rmtree(final)
            tmp = Path(tempfile.mkdtemp(prefix=f"{BUILD_PREFIX}{key}-", dir=self.root))
            try:
                started = time.time()
                builder(tmp, progress)
                outputs = hash_outputs(tmp)
                if not outputs:
                    raise BuildError(f"engine build {key} produced no files")
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "key": key,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "build_seconds": round(time.time() - started, 1),
                    "inputs": dict(inputs),
                    "outputs": {
                        rel: {"sha256": digest, "size": (tmp / rel).stat().st_size}
                        for rel, digest in outputs.items()
                    },
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._touch(final)
            progress(f"engine {key} built")
            return EngineEntry(key, final, manifest, True)

    # -- listing and pruning ---------------------------------------------------------------
    def entries(self, *, full: bool = False) -> list[EntryInfo]:
        """Every entry and leftover, most recently used first."""
        if not self.root.is_dir():
            return []
        rows: list[EntryInfo] = []
        for path in self.root.iterdir():
            if not path.is_dir() or path.name == ".locks":
                continue
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            if path.name.startswith(BUILD_PREFIX):
                key = path.name[len(BUILD_PREFIX) :].rsplit("-", 1)[0]
                state = "building" if self._locked(key) else "partial"
                rows.append(
                    EntryInfo(
                        key,
                        path,
                        state,
                        size,
                        None,
                        path.stat().st_mtime,
                        None,
                        None,
                        "temporary build folder",
                    )
                )
                continue
            state, why = self.verify(path.name, full=full)
            manifest: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                manifest = json.loads((path / MANIFEST).read_text())
            spec = (manifest.get("inputs") or {}).get("spec") or {}
            last = path / LAST_USED
            rows.append(
                EntryInfo(
                    key=path.name,
                    path=path,
                    state=state,
                    size_bytes=size,
                    created=manifest.get("built_at"),
                    last_used=(last.stat().st_mtime if last.exists() else path.stat().st_mtime),
                    model=spec.get("model_id"),
                    gpu_arch=spec.get("gpu_arch"),
                    detail=why,
                )
            )
        rows.sort(key=lambda r: r.last_used, reverse=True)
        return rows

    def gc(self, keep: int) -> list[EntryInfo]:
        """Keep the ``keep`` most recently used valid engines; remove the rest and all leftovers."""
        if keep < 0:
            raise BuildError(f"--keep {keep}: expected 0 or more")
        removed: list[EntryInfo] = []
        kept = 0
        for row in self.entries():
            if row.state == "building":
                continue  # a live build holds its lock; never pull the floor from under it
            if row.state == "ok" and kept < keep:
                kept += 1
                continue
            shutil.rmtree(row.path, ignore_errors=True)
            removed.append(row)
        return removed

    # -- helpers ---------------------------------------------------------------------------
    def _locked(self, key: str) -> bool:
        lock = self.root / ".locks" / f"{key}.lock"
        if not lock.exists():
            return False
        with open(lock) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False

    @staticmethod
    def _touch(entry: Path) -> None:
        with contextlib.suppress(OSError):
            (entry / LAST_USED).touch()
            now = time.time()
            os.utime(entry / LAST_USED, (now, now))
