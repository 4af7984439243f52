"""The question key ring: the secret keys the audit trail HMACs each question with.

Why a keyed HMAC and not a plain hash: a question is short and often predictable ("how many weeks
of parental leave?"), so anyone who can read the audit trail could confirm a guess against a plain
sha256 and ``includeQuestionText: false`` would protect nothing. With HMAC-SHA256 under a 32-byte
random key only whoever holds the key ring can test a guess: investigators, through
``llmctl audit find``.

Why a ring and not one key: rotating a key must not orphan the records written under the old one,
so rotation adds a new active key and keeps the others; every record names the key it used
(``question_key_id``).

Kept like the development signing key (``llmctl.gateway.auth``): one 0600 JSON file in the stack's
``auth`` folder (0700), created once by ``llmctl up``, written atomically (temp file + rename)
under a lock so a reader never sees half a ring and two rotations never lose a key. The gateway
reads the file at start and notices a rotation by the file's identity (inode, mtime, size), which
it checks with one ``stat`` at most once a second, so rotating needs no restart and costs the
request path nothing measurable. Key bytes never leave this module in a message: errors and logs
name the file and key ids only, and ``QuestionKey`` keeps its secret out of its ``repr``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError
from llmctl.state import StackState

QUESTION_KEYS_FILE = "question-keys.json"
KEY_BYTES = 32
RING_VERSION = 1
RELOAD_CHECK_S = 1.0
EPHEMERAL_PREFIX = "ephemeral-"

log = logging.getLogger("llmctl.gateway")


class QuestionKeyError(LlmctlError):
    """The question key ring is missing or unusable (the message never holds key material)."""


@dataclass(frozen=True)
class QuestionKey:
    """One key of the ring: an id records can name, when it was made, and the secret."""

    key_id: str
    created: str
    secret: bytes = field(repr=False)

    def digest(self, question: str) -> str:
        """Hex HMAC-SHA256 of the question's UTF-8 bytes under this key."""
        return hmac.new(self.secret, question.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class QuestionKeyRing:
    """Every key of a ring, oldest first, and which one new records use."""

    keys: tuple[QuestionKey, ...]
    active_id: str

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids) or self.active_id not in ids:
            raise QuestionKeyError("question key ring: duplicate key ids or no active key")

    @property
    def active(self) -> QuestionKey:
        return next(k for k in self.keys if k.key_id == self.active_id)

    @property
    def ephemeral(self) -> bool:
        """True for the in-memory ring of a gateway with no key file (see ``ring_source``)."""
        return self.active_id.startswith(EPHEMERAL_PREFIX)

    def get(self, key_id: str | None) -> QuestionKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def digest(self, question: str) -> tuple[str, str]:
        """``(hmac hex, key id)`` of the question under the active key: what a record carries."""
        key = self.active
        return key.digest(question), key.key_id

    def digests(self, question: str) -> dict[str, str]:
        """The question's HMAC under every key, by key id: what an investigator matches against."""
        return {k.key_id: k.digest(question) for k in self.keys}

    def describe(self) -> list[dict[str, Any]]:
        """The ring without its secrets (ids, creation times, which is active)."""
        return [
            {"key_id": k.key_id, "created": k.created, "active": k.key_id == self.active_id}
            for k in self.keys
        ]


def question_keys_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where a stack keeps its ring: ``<state_dir>/auth/question-keys.json``."""
    return StackState.at(state_dir).auth_dir / QUESTION_KEYS_FILE


def new_key(prefix: str = "qk-") -> QuestionKey:
    """A fresh random key; its id is random too (never derived from the secret)."""
    now = datetime.now(UTC)
    key_id = f"{prefix}{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    created = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    return QuestionKey(key_id, created, secrets.token_bytes(KEY_BYTES))


def ephemeral_ring() -> QuestionKeyRing:
    """A one-key ring that lives in this process only: records stay unguessable but unmatchable."""
    key = new_key(EPHEMERAL_PREFIX)
    return QuestionKeyRing((key,), key.key_id)


def ensure_question_keys(state_dir: str | os.PathLike[str]) -> Path:
    """Create (once) the stack's ring with one active key; an existing ring is kept untouched,
    so records written before a restart or a re-``up`` stay matchable."""
    path = question_keys_path(state_dir)
    _prepare_dir(path.parent)
    with _locked(path):
        if not path.exists():
            key = new_key()
            _write_ring(path, QuestionKeyRing((key,), key.key_id))
    os.chmod(path, 0o600)
    return path


def rotate_question_key(path: str | os.PathLike[str]) -> QuestionKey:
    """Add a new active key to the ring at ``path``, keeping the old ones; returns the new key.

    The ring must exist (``llmctl up`` makes it): rotating a ring nobody serves would only hide a
    wrong path.
    """
    p = Path(path)
    with _locked(p):
        ring = load_ring(p)
        key = new_key()
        while ring.get(key.key_id) is not None:  # two rotations within one second
            key = new_key()
        _write_ring(p, QuestionKeyRing((*ring.keys, key), key.key_id))
    return key


def load_ring(path: str | os.PathLike[str]) -> QuestionKeyRing:
    """Read a ring file. Errors say which file and what to do, never what it holds."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise QuestionKeyError(
            f"{p}: no question key ring here; start the stack with `llmctl up` first"
        ) from exc
    except OSError as exc:
        raise QuestionKeyError(
            f"{p}: cannot read the question key ring ({exc.strerror}); check its owner and mode"
        ) from None
    try:
        return _ring_from_dict(json.loads(raw))
    except QuestionKeyError:
        raise
    except Exception:  # the parser's message could quote the file's bytes: say nothing of them
        raise QuestionKeyError(
            f"{p}: not a question key ring (unreadable or wrong fields); restore it from a backup"
        ) from None


def _ring_from_dict(data: dict[str, Any]) -> QuestionKeyRing:
    if data.get("version") != RING_VERSION:
        raise ValueError("version")
    keys = tuple(
        QuestionKey(str(k["id"]), str(k["created"]), bytes.fromhex(k["key"])) for k in data["keys"]
    )
    if any(len(k.secret) != KEY_BYTES for k in keys):
        raise ValueError("key length")
    return QuestionKeyRing(keys, str(data["active"]))


def _ring_to_dict(ring: QuestionKeyRing) -> dict[str, Any]:
    return {
        "version": RING_VERSION,
        "active": ring.active_id,
        "keys": [{"id": k.key_id, "created": k.created, "key": k.secret.hex()} for k in ring.keys],
    }


def _prepare_dir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers of one ring (``up`` and ``rotate-key`` may race) with a lock file."""
    if not path.parent.is_dir():
        raise QuestionKeyError(
            f"{path}: no question key ring here; start the stack with `llmctl up` first"
        )
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_ring(path: Path, ring: QuestionKeyRing) -> None:
    """Atomically replace the file: a 0600 temp file from the start (never world-readable, not
    even for an instant), fsynced, then renamed over the ring."""
    data = (json.dumps(_ring_to_dict(ring), indent=2) + "\n").encode("ascii")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


# --- the gateway's view: loaded at start, re-read when the file changes --------------------------


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class RingSource:
    """The ring a running gateway signs with, following rotations without a restart.

    ``ring()`` is on every request's path, so it costs an attribute read almost always and one
    ``stat`` at most every ``check_every_s``; the file is re-read only when its identity changed.
    A ring that turns unreadable later keeps the last good one in use (logged once per change):
    records stay matchable, and the start is where a missing ring fails.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, *, check_every_s: float = RELOAD_CHECK_S
    ) -> None:
        self.path = Path(path) if path is not None else None
        self._every = check_every_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        if self.path is None:
            self._ring = ephemeral_ring()
            self._identity: tuple[int, int, int, int] | None = None
            log.warning(
                "audit: no question key ring configured (audit.question_key_path); questions are "
                "HMACed with an ephemeral key %s that ends with this process, so `llmctl audit "
                "find` cannot match these records",
                self._ring.active_id,
            )
            return
        try:
            self._identity = _identity(self.path)
        except OSError:
            self._identity = None
        self._ring = load_ring(self.path)

    def ring(self) -> QuestionKeyRing:
        """The current ring (re-read first if the file changed since the last look)."""
        if self.path is None or time.monotonic() - self._checked < self._every:
            return self._ring
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self._every:
                self._checked = now
                self._reload_if_changed()
        return self._ring

    def _reload_if_changed(self) -> None:
        assert self.path is not None
        try:
            identity = _identity(self.path)
        except OSError as exc:
            if self._identity is not None:
                log.warning(
                    "audit: question key ring %s unreadable (%s); still using key %s",
                    self.path,
                    exc.strerror,
                    self._ring.active_id,
                )
            self._identity = None
            return
        if identity == self._identity:
            return
        self._identity = identity
        try:
            ring = load_ring(self.path)
        except QuestionKeyError as exc:
            log.warning("audit: %s; still using key %s", exc, self._ring.active_id)
            return
        if ring.active_id != self._ring.active_id:
            log.info("audit: question key ring reloaded; active key now %s", ring.active_id)
        self._ring = ring


_SOURCES: dict[str | None, RingSource] = {}
_SOURCES_LOCK = threading.Lock()


def ring_source(path: str | os.PathLike[str] | None) -> RingSource:
    """The one ``RingSource`` of this process for ``path`` (None: the ephemeral ring).

    One per path, not one per app, so the audit record's builder can find it from the config alone
    and several apps in one process (tests) share a file's ring. Raises ``QuestionKeyError`` when a
    configured ring cannot be read: ``build_gateway`` calls this first, so that fails the start.
    """
    key = str(path) if path is not None else None
    with _SOURCES_LOCK:
        source = _SOURCES.get(key)
        if source is None:
            source = _SOURCES[key] = RingSource(path)
        return source


def question_fields(path: str | os.PathLike[str] | None, question: str | None) -> dict[str, str]:
    """The audit record's ``question_hmac`` and ``question_key_id`` (none without a question)."""
    if question is None:
        return {}
    digest, key_id = ring_source(path).ring().digest(question)
    return {"question_hmac": digest, "question_key_id": key_id}


def match_records(
    ring: QuestionKeyRing, question: str, records: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The records whose ``question_hmac`` is this question's under the key they name (or, for a
    record naming a key the ring lacks, under any key), each reduced to what an investigator
    needs: request id, time, subject, outcome and key id."""
    digests = ring.digests(question)
    anywhere = set(digests.values())
    found = []
    for rec in records:
        mac = rec.get("question_hmac")
        if not isinstance(mac, str) or rec.get("stage") == "intent":  # its completion follows
            continue
        key_id = rec.get("question_key_id")
        expected = digests.get(key_id) if isinstance(key_id, str) else None
        if mac == expected if expected is not None else mac in anywhere:
            found.append(
                {
                    "request_id": rec.get("request_id"),
                    "time": rec.get("time"),
                    "subject": rec.get("subject"),
                    "outcome": rec.get("outcome"),
                    "key_id": key_id,
                }
            )
    return found
