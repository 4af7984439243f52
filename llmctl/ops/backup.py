"""``llmctl backup`` and ``llmctl restore``: a local stack's state as one verifiable folder.

What a backup holds, and why (docs/CONTRACTS.md, "Places on disk", names the sources)::

    MANIFEST.json       every file below with its sha256 and size; blueprint name and hash,
                        target, index_hash, time, llmctl version: what restore checks first
    index/              the LanceDB table at one version, and the index's manifest.json
    audit/              the live audit file (whole lines only) and the sealed archive with its
                        MANIFEST.jsonl: the compliance evidence, which nothing can rebuild
    models/             which builds the stack served (stack.json's keys) and each build's
                        manifest.json from the cache; not the weights, which ``llmctl up``
                        rebuilds from the installed packages under the same content keys
    config/             the blueprint file as applied (its hash in MANIFEST.json) and the gateway
                        config: for comparing, never restored (``up`` writes both afresh)
    secrets/            only with ``include_secrets``: the dev signing key and the audit's
                        question key ring (0600)

Why no secrets by default: a backup travels (another disk, another machine, a colleague's
laptop), and the question key ring is what turns the trail's question HMACs back into answers
to "who asked this?": whoever holds the ring and the trail can test guesses against every
record. Without them a restored stack gets a new dev key (earlier tokens stop working) and a
new ring (``llmctl audit find`` cannot match records from before the backup); with them the
restored stack is the same stack, which is the operator's call to make, with ``--include-secrets``.

Consistency: the stack's lock (the flock ``up`` and ``down`` take) is held throughout, so no
``up``, ``down``, watchdog restart or restore changes the folder meanwhile. ``llmctl ingest``
does not take that lock, so the index is copied at one table version, checked against its
index_hash, and the audit trail up to whole lines (``llmctl.ops.live_copy`` says how and why).

Atomic on both sides: a backup is written into a temporary folder beside the destination and
renamed into place at the end; a restore verifies every hash before touching the stack, stages
the copy inside the state folder and renames it into place, so a failure leaves no half state.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from llmctl import __version__
from llmctl.digest import sha256_file
from llmctl.ops.live_copy import BackupError, copy_audit, copy_index
from llmctl.state import StackState

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

__all__ = ["BackupError", "BackupResult", "RestoreResult", "backup", "restore", "verify_backup"]

FORMAT = 1
MANIFEST_FILE = "MANIFEST.json"
SECRET_FILES = ("dev-signing-key.pem", "question-keys.json")


@dataclass
class BackupResult:
    """What ``backup`` wrote: the folder and what MANIFEST.json says of it."""

    destination: Path
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "destination": str(self.destination),
            "blueprint": m["blueprint"]["name"],
            "blueprint_hash": m["blueprint"]["hash"],
            "target": m["target"],
            "index_hash": m["index_hash"],
            "audit_records": m["audit"]["records"],
            "secrets_included": m["secrets"]["included"],
            "files": len(m["files"]),
            "bytes": sum(f["bytes"] for f in m["files"]),
            "created": m["created"],
            "warnings": self.warnings,
        }

    def summary(self) -> list[str]:
        d = self.to_dict()
        lines = [
            f"backed up {d['blueprint']} ({d['target']}) to {self.destination}: {d['files']} "
            f"files, {d['bytes'] / 1e6:.1f} MB",
            f"  index {str(d['index_hash'] or '-')[:16]}, {d['audit_records']} audit records",
            "  secrets included (0600): keep this folder as safe as the stack itself"
            if d["secrets_included"]
            else "  secrets not included (dev signing key, question key ring): see --include-secrets",
        ]
        return lines + [f"  warning: {w}" for w in self.warnings]


@dataclass
class RestoreResult:
    """What ``restore`` put into the state folder."""

    source: Path
    state_dir: Path
    manifest: dict[str, Any]
    restored: list[str]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "source": str(self.source),
            "state_dir": str(self.state_dir),
            "blueprint": m["blueprint"]["name"],
            "target": m["target"],
            "index_hash": m["index_hash"],
            "audit_records": m["audit"]["records"],
            "restored": self.restored,
            "secrets_restored": "secrets" in self.restored,
            "warnings": self.warnings,
        }

    def summary(self) -> list[str]:
        d = self.to_dict()
        lines = [
            f"restored {', '.join(self.restored) or 'nothing'} of {d['blueprint']} into "
            f"{self.state_dir}",
            f"  index {str(d['index_hash'] or '-')[:16]}, {d['audit_records']} audit records; "
            "`llmctl up` serves it (no ingest needed)",
        ]
        return lines + [f"  warning: {w}" for w in self.warnings]


# -- paths and locks ------------------------------------------------------------------------------
def local_folder(uri: str) -> Path:
    """The directory a ``--to``/``--from`` URI names: a path or ``file://``; nothing else.

    Object stores are refused: llmctl installs no object-store client of its own, and the one
    that arrives with lancedb's pyarrow is not wired in, because a backup appears whole by one
    rename, which object stores do not have.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BackupError(f"{uri}: a file:// URI names a folder on this machine (no host)")
        return Path(unquote(parts.path)).expanduser().absolute()
    if parts.scheme and len(parts.scheme) > 1:
        raise BackupError(
            f"{uri}: only directories (a path or file://) are supported here: llmctl has no "
            f"{parts.scheme}:// client of its own and a backup relies on a folder rename to "
            "appear whole; back up to a directory, then copy it with your storage's own tool"
        )
    return Path(uri).expanduser().absolute()


@contextlib.contextmanager
def stack_lock(state: StackState, wait_s: float = 10.0) -> Iterator[None]:
    """The flock ``llmctl up``/``down`` take on ``state.lock_file`` (``LocalTarget._locked``)."""
    state.dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(state.lock_file, "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackupError(
                        f"another llmctl (up, down, restore or the watchdog) holds the lock of "
                        f"{state.dir}; wait for it to finish"
                    ) from None
                time.sleep(0.2)
        yield


def _local_state(bp: Blueprint, target: str, home: Path | None) -> StackState:
    kind = bp.target(target).type  # an unknown target is a one-line error naming the known ones
    if kind != "local":
        raise BackupError(
            f"target {target!r} is {kind}: its index and audit volumes are snapshotted in the "
            "cluster (the <name>-backup CronJob takes VolumeSnapshots); backup and restore work "
            "on local targets"
        )
    return StackState.of(bp.name, target, home)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- models, config, secrets --------------------------------------------------------------------
def _models(bp: Blueprint, state: StackState, dst: Path, cache: Path | None) -> dict[str, Any]:
    """The builds the stack serves: stack.json's keys while it is up, else the keys the
    blueprint resolves to now; each with its cached build manifest when the cache holds it."""
    from llmctl.local.repository import LocalRepository

    repository = LocalRepository(cache)
    applied: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        applied = json.loads(state.stack_file.read_text(encoding="utf-8"))
    keys: dict[str, str] = dict(applied.get("models") or {})
    source = "stack.json (applied)"
    if not keys:
        source = "the blueprint (the stack is not up)"
        try:
            from llmctl.local.spec import local_spec_from_blueprint

            keys = repository.keys(local_spec_from_blueprint(bp))
        except Exception as exc:  # a missing weight file: record why, the backup still helps
            source = f"unknown ({type(exc).__name__}: {exc})".splitlines()[0]
    builds = {}
    for name, key in sorted(keys.items()):
        build = repository.models_root / f"{name}-{key}" / "manifest.json"
        entry: dict[str, Any] = {"key": key, "manifest": None}
        if build.is_file():
            out = dst / f"{name}-{key}.manifest.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(build, out)
            entry["manifest"] = f"models/{out.name}"
        builds[name] = entry
    dst.mkdir(parents=True, exist_ok=True)
    doc = {"source": source, "builds": builds, "applied_plan_hash": applied.get("plan_hash")}
    (dst / "builds.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return {**doc, "applied_blueprint_hash": applied.get("blueprint_hash")}


def _secrets(state: StackState, dst: Path) -> list[str]:
    copied = []
    for name in SECRET_FILES:
        src = state.auth_dir / name
        if src.is_file():
            dst.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(dst / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(src.read_bytes())
            copied.append(name)
    return copied


def file_list(root: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": p.relative_to(root).as_posix(),
            "sha256": sha256_file(p),
            "bytes": p.stat().st_size,
        }
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    ]


def check_destination(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest}: exists and is not a folder; choose a new or empty folder")
    if dest.is_dir() and any(dest.iterdir()):
        what = "already holds a backup" if (dest / MANIFEST_FILE).exists() else "is not empty"
        raise BackupError(f"{dest}: {what}; choose a new or empty folder")


# -- backup ---------------------------------------------------------------------------------------
def backup(
    bp: Blueprint,
    target: str,
    to: str,
    *,
    include_secrets: bool = False,
    home: Path | None = None,
    cache: Path | None = None,
) -> BackupResult:
    """Write the stack's index, audit trail, model manifest and config (and, only when asked,
    its secrets: see the module docstring) into the new or empty folder ``to``, atomically."""
    state = _local_state(bp, target, home)
    if not state.dir.is_dir():
        raise BackupError(f"{state.dir}: no state for {bp.name!r} ({target}); nothing to back up")
    dest = local_folder(to)
    check_destination(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    warnings: list[str] = []
    try:
        with stack_lock(state):
            index: dict[str, Any] = {"index_hash": "", "version": None}
            if state.index_dir.is_dir() and any(state.index_dir.iterdir()):
                index = copy_index(state.index_dir, tmp / "index")
            else:
                warnings.append("no index in the stack (llmctl ingest never ran)")
            audit = {"records": 0, "files": 0}
            if state.audit_file.parent.is_dir():
                audit = copy_audit(state.audit_file, tmp / "audit")
            else:
                warnings.append("no audit trail yet (the gateway writes it once it serves)")
            models = _models(bp, state, tmp / "models", cache)
            (tmp / "config").mkdir()
            bp_copy = tmp / "config" / bp.path.name
            shutil.copy2(bp.path, bp_copy)
            if state.gateway_config.is_file():
                shutil.copy2(state.gateway_config, tmp / "config" / "gateway.json")
            secrets = _secrets(state, tmp / "secrets") if include_secrets else []
        applied = models.pop("applied_blueprint_hash")
        if applied and applied != bp.hash:
            warnings.append(f"the stack runs blueprint {applied[:12]}, the file is {bp.hash[:12]}")
        manifest = {
            "kind": "llmctl-backup",
            "format": FORMAT,
            "llmctl_version": __version__,
            "created": _now(),
            "blueprint": {
                "name": bp.name,
                "hash": bp.hash,
                "applied_hash": applied,
                "file": f"config/{bp_copy.name}",
            },
            "target": target,
            "index_hash": index["index_hash"],
            "index_version": index["version"],
            "audit": audit,
            "models": models,
            "secrets": {
                "included": include_secrets,
                "files": [f"secrets/{n}" for n in secrets],
                "note": "0600 copies of the dev signing key and the question key ring"
                if include_secrets
                else "left out by default: with the question keys anyone can test guesses "
                "against the trail's question HMACs (llmctl backup --include-secrets)",
            },
            "files": file_list(tmp),
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        check_destination(dest)  # nothing appeared there meanwhile
        os.replace(tmp, dest)  # onto a missing or empty folder: the backup appears whole
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BackupResult(dest, manifest, warnings)


# -- restore --------------------------------------------------------------------------------------
def verify_backup(folder: Path) -> dict[str, Any]:
    """MANIFEST.json of ``folder`` once every file it lists has its size and sha256 and no
    other file is there; a one-line BackupError naming the first that does not."""
    return verify_folder(folder, "llmctl-backup", FORMAT, "backup")


def verify_folder(folder: Path, kind: str, fmt: int, what: str) -> dict[str, Any]:
    """``verify_backup`` for any folder written with ``file_list`` (backups, revision archives):
    its MANIFEST.json of ``kind`` and ``fmt``, every listed file whole, nothing else there."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path}: missing; {folder} is not an llmctl {what}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path}: unreadable ({exc}); the {what} is damaged") from None
    if manifest.get("kind") != kind or manifest.get("format") != fmt:
        raise BackupError(f"{path}: not an llmctl {what} of format {fmt}")
    listed = {}
    for entry in manifest.get("files") or []:
        rel = str(entry.get("path", ""))
        p = folder / rel
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise BackupError(f"{path}: lists {rel!r}, outside the {what}; it is damaged")
        if not p.is_file():
            raise BackupError(f"{p}: listed in {MANIFEST_FILE} but missing; nothing restored")
        if p.stat().st_size != entry.get("bytes") or sha256_file(p) != entry.get("sha256"):
            raise BackupError(f"{p}: sha256 differs from {MANIFEST_FILE}; nothing restored")
        listed[rel] = entry
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != MANIFEST_FILE and rel not in listed:
            raise BackupError(f"{p}: not listed in {MANIFEST_FILE}; nothing restored")
    return manifest


def _occupied(state: StackState, with_secrets: bool) -> list[str]:
    """What in the state folder a restore would overwrite."""
    found = []
    if state.index_dir.is_dir() and any(state.index_dir.iterdir()):
        found.append(str(state.index_dir))
    if state.audit_file.parent.is_dir() and any(state.audit_file.parent.iterdir()):
        found.append(str(state.audit_file.parent))
    if with_secrets:
        found += [str(state.auth_dir / n) for n in SECRET_FILES if (state.auth_dir / n).exists()]
    return found


def _refuse_busy(state: StackState, with_secrets: bool) -> None:
    from llmctl.local.supervisor import Supervisor

    flag = "" if state.target == "local" else f" --target {state.target}"
    if Supervisor(state.dir).records():
        raise BackupError(
            f"stack {state.blueprint!r} ({state.target}) is running: `llmctl down BLUEPRINT"
            f"{flag}` first (restore writes only into a stopped, empty state folder)"
        )
    occupied = _occupied(state, with_secrets)
    if occupied:
        raise BackupError(
            f"{occupied[0]} already exists: restore never mixes states; remove {state.dir} (after "
            "`llmctl down`) or restore into another target"
        )


def _stage(folder: Path, manifest: dict[str, Any], prefix: str, stage: Path) -> bool:
    """Copy the listed files under ``prefix`` into ``stage``, re-checking each hash."""
    entries = [e for e in manifest["files"] if e["path"].startswith(prefix + "/")]
    for e in entries:
        src, out = folder / e["path"], stage / e["path"]
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        if sha256_file(out) != e["sha256"]:
            raise BackupError(f"{src}: changed while it was restored; nothing restored")
        if prefix in ("audit", "secrets"):
            os.chmod(out, 0o600)
    return bool(entries)


def restore(
    bp: Blueprint,
    target: str,
    source: str,
    *,
    home: Path | None = None,
    confirm: Callable[[dict[str, Any]], None] | None = None,
) -> RestoreResult:
    """Put a backup's index and audit trail (and secrets, when it holds them) into the stopped,
    empty state folder of ``bp``'s ``target``, after every hash checked out.

    ``confirm`` (the CLI's question) is called with the manifest once the backup has been
    checked and the target found free, before anything is written: nobody is asked to confirm
    a restore that would then be refused."""
    state = _local_state(bp, target, home)
    folder = local_folder(source)
    if not folder.is_dir():
        raise BackupError(f"{folder}: no such folder")
    manifest = verify_backup(folder)
    name = manifest["blueprint"]["name"]
    if name != bp.name:
        raise BackupError(
            f"{folder}: a backup of blueprint {name!r}, not {bp.name!r}; restore it with its own "
            "blueprint"
        )
    warnings = []
    if manifest["blueprint"]["hash"] != bp.hash:
        warnings.append(
            f"the backup was taken with blueprint {manifest['blueprint']['hash'][:12]}, the file "
            f"is {bp.hash[:12]} (compare with {manifest['blueprint']['file']} in the backup)"
        )
    with_secrets = bool(manifest["secrets"]["files"])
    _refuse_busy(state, with_secrets)
    if confirm is not None:
        confirm(manifest)
    restored: list[str] = []
    with stack_lock(state):
        _refuse_busy(state, with_secrets)  # again, now that nothing else can start it
        stage = Path(tempfile.mkdtemp(prefix=".restore-", dir=state.dir))
        moved: list[Path] = []
        try:
            parts = [p for p in ("index", "audit", "secrets") if _stage(folder, manifest, p, stage)]
            for part in parts:
                if part == "index":
                    os.rename(stage / "index", state.index_dir)
                    moved.append(state.index_dir)
                elif part == "audit":
                    os.chmod(stage / "audit", 0o700)
                    state.audit_file.parent.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(stage / "audit", state.audit_file.parent)
                    moved.append(state.audit_file.parent)
                else:
                    state.auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.chmod(state.auth_dir, 0o700)
                    for f in sorted((stage / "secrets").iterdir()):
                        os.rename(f, state.auth_dir / f.name)
                        moved.append(state.auth_dir / f.name)
                restored.append(part)
        except BaseException:
            for p in reversed(moved):  # no partial state: undo what was moved in
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    if not with_secrets:
        warnings.append(
            "no secrets in the backup: `llmctl up` makes a new dev signing key (earlier tokens "
            "stop working) and a new question key ring (`llmctl audit find` cannot match records "
            "from before the backup)"
        )
    return RestoreResult(folder, state.dir, manifest, restored, warnings)
