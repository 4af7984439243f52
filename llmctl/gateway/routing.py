"""Which revision answers a request: weighted, sticky arms read from the stack's routing file.

``llmctl rollout`` (and ``rollback``, ``retire``, the A/B experiment mode) writes
``StackState.routing_file``; the gateway re-reads it within a second of a change, so traffic
shifts without a restart. Without the file every request goes to the gateway config's own
revision.

Assignment is sticky per subject: the caller's subject (or, for anonymous callers, the request
id) is hashed with the routing's salt into one of 10,000 buckets, and the canary arm owns the
lowest buckets. Raising its weight from 5 to 25 % therefore keeps every user who was on the
canary there: nobody switches revisions mid-conversation while a rollout advances, and a
rollback moves everyone back at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUCKETS = 10_000
ROLES = ("canary", "stable", "a", "b")
FORMAT = 1


@dataclass(frozen=True)
class Arm:
    revision: str
    role: str  # "stable" | "canary" (rollout) | "a" | "b" (experiment)
    weight: float  # percent of subjects
    llm_version: str | None = None  # Triton model version; None: the model's default
    settings: Mapping[str, Any] = field(default_factory=dict)  # GatewayConfig overrides
    llm_url: str | None = None  # another Triton (a canary Deployment); None: the configured one

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "role": self.role,
            "weight": self.weight,
            "llm_version": self.llm_version,
            "settings": dict(self.settings),
            "llm_url": self.llm_url,
        }


@dataclass(frozen=True)
class Routing:
    arms: tuple[Arm, ...]
    mode: str = "canary"  # "canary" | "experiment"
    salt: str = ""
    updated_at: float = 0.0

    def arm(self, role: str) -> Arm | None:
        return next((a for a in self.arms if a.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "mode": self.mode,
            "salt": self.salt,
            "updated_at": self.updated_at,
            "arms": [a.to_dict() for a in self.arms],
        }


def parse_routing(doc: Mapping[str, Any], source: str) -> Routing:
    """A routing document, checked: known roles, weights 0..100 summing to 100."""
    arms = []
    for raw in doc.get("arms") or ():
        role = str(raw.get("role"))
        if role not in ROLES:
            raise ValueError(f"{source}: unknown arm role {role!r}")
        weight = float(raw.get("weight", 0))
        if not 0 <= weight <= 100:
            raise ValueError(f"{source}: arm {role} weight {weight} not in 0..100")
        version = raw.get("llm_version")
        arms.append(
            Arm(
                revision=str(raw["revision"]),
                role=role,
                weight=weight,
                llm_version=str(version) if version not in (None, "") else None,
                settings=dict(raw.get("settings") or {}),
                llm_url=str(raw["llm_url"]) if raw.get("llm_url") else None,
            )
        )
    if not arms:
        raise ValueError(f"{source}: no arms")
    total = sum(a.weight for a in arms)
    if abs(total - 100) > 1e-6:
        raise ValueError(f"{source}: arm weights sum to {total:g}, not 100")
    # the canary (or arm b) owns the lowest buckets, so growing it keeps its subjects on it
    order = {"canary": 0, "b": 1, "stable": 2, "a": 3}
    arms.sort(key=lambda a: order[a.role])
    return Routing(
        tuple(arms),
        str(doc.get("mode") or "canary"),
        str(doc.get("salt") or ""),
        float(doc.get("updated_at") or 0.0),
    )


def read_routing(path: Path) -> Routing | None:
    """The routing file, or None when there is none. Raises ValueError when it is damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_routing(json.loads(text), str(path))


def write_routing(path: Path, routing: Routing) -> None:
    """Atomically replace the routing file (the gateway never reads half of one)."""
    parse_routing(routing.to_dict(), str(path))  # refuse to write what the gateway would reject
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    doc = routing.to_dict() | {"updated_at": time.time()}
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def bucket(salt: str, key: str) -> int:
    """The subject's bucket in 0..BUCKETS-1 (stable across processes and restarts)."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose(routing: Routing, key: str) -> Arm:
    """The arm whose share of buckets ``key`` falls in."""
    b = bucket(routing.salt, key)
    edge = 0.0
    for arm in routing.arms:
        edge += arm.weight * BUCKETS / 100
        if b < edge:
            return arm
    return routing.arms[-1]


class Router:
    """The gateway's view of the routing file, re-read at most every ``reload_s`` seconds.

    A damaged file keeps the last good routing (and says so in ``error``), so a bad write
    cannot take the service down; with no file the default arm answers everything.
    """

    def __init__(self, path: Path | None, default_revision: str, reload_s: float = 1.0) -> None:
        self.path = path
        self.default = Routing((Arm(default_revision, "stable", 100.0),))
        self.reload_s = reload_s
        self.error = ""
        self._routing = self.default
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def current(self) -> Routing:
        now = time.monotonic()
        if self.path is None or now - self._checked < self.reload_s:
            return self._routing
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._routing, self._stamp, self.error = self.default, None, ""
                return self._routing
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                try:
                    self._routing = read_routing(self.path) or self.default
                    self.error = ""
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    self.error = f"{self.path}: {exc}"
                self._stamp = stamp
        return self._routing

    def choose(self, subject: str | None, request_id: str) -> Arm:
        return choose(self.current(), subject or request_id)
