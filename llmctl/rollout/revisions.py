"""Revisions: every applied plan, named by what decides its answers, and its life in one history.

A revision is identified by the hashes of the blueprint, the model (the local build key, or the
production engine/artifact version), the prompt settings the gateway applies (template, stop
words, decoding, output and input budgets, retrieval depth) and the index specification. Two
applies of an unchanged blueprint are the same revision; a changed ``maxOutputTokens`` is a new
one, which ``llmctl rollout`` can put beside the current one.

The history (``StackState.revisions_file``) is append-only JSON lines, one event per change of
state, written with ``O_APPEND`` and fsynced; ``history`` folds them into each revision's latest
state. States: ``active`` (answers as the stable arm), ``canary`` (answers a share during a
rollout), ``rolled-back`` (failed or withdrawn, no longer routed), ``retired`` (replaced, or
archived and removed with ``llmctl retire``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError

STATES = ("active", "canary", "rolled-back", "retired")
# The gateway settings a revision carries (what a rollout or an A/B arm may change per arm).
SETTINGS = (
    "max_output_tokens",
    "max_input_tokens",
    "temperature",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop_words",
    "chat_template",
    "prompt_format",
    "top_k",
    "min_score",
)


@dataclass(frozen=True)
class Revision:
    id: str
    state: str
    blueprint_hash: str
    model_hash: str
    prompt_hash: str
    index_hash: str
    llm_version: str = "1"  # the Triton model version that serves it
    settings: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    note: str = ""
    archive: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["settings"] = dict(self.settings)
        return d


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def gateway_settings(config: Any) -> dict[str, Any]:
    """The per-revision settings of a ``GatewayConfig`` (JSON-ready)."""
    lim = config.limits
    return {
        "max_output_tokens": int(lim.max_output_tokens),
        "max_input_tokens": int(lim.max_input_tokens),
        "temperature": float(config.temperature),
        "frequency_penalty": getattr(config, "frequency_penalty", None),
        "presence_penalty": getattr(config, "presence_penalty", None),
        "seed": getattr(config, "seed", None),
        "stop_words": list(config.stop_words),
        "chat_template": config.chat_template,
        "prompt_format": config.prompt_format,
        "top_k": int(lim.default_top_k),
        "min_score": float(lim.min_score),
    }


def revision_for(
    *, blueprint_hash: str, model_hash: str, index_hash: str, settings: Mapping[str, Any]
) -> Revision:
    """The revision these inputs make (state ``active`` until a rollout says otherwise)."""
    prompt_hash = _digest(dict(settings))[:16]
    rid = _digest([blueprint_hash, model_hash, prompt_hash, index_hash])[:12]
    return Revision(
        id=rid,
        state="active",
        blueprint_hash=blueprint_hash,
        model_hash=model_hash,
        prompt_hash=prompt_hash,
        index_hash=index_hash,
        settings=dict(settings),
    )


def revision_from_config(config: Any, index_spec: str) -> Revision:
    """The revision a gateway config serves: its blueprint, model (``engine_hash``: the local
    build key or the production engine/artifact version), settings and the index spec."""
    return revision_for(
        blueprint_hash=str(config.blueprint_hash),
        model_hash=str(config.engine_hash),
        index_hash=index_spec,
        settings=gateway_settings(config),
    )


class History:
    """The append-only revision history of one stack."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                if n == len(lines):  # a torn last line (a crash mid-write) is not an event
                    break
                raise LlmctlError(
                    f"{self.path}:{n}: not a JSON line; the history is damaged"
                ) from None
        return out

    def revisions(self) -> dict[str, Revision]:
        """id -> the revision at its latest state, in the order they first appeared."""
        out: dict[str, Revision] = {}
        for event in self.events():
            doc = dict(event.get("revision") or {})
            rid = str(doc.get("id") or "")
            if not rid:
                continue
            prev = out.get(rid)
            fields = {k: v for k, v in doc.items() if k in Revision.__dataclass_fields__}
            rev = replace(prev, **fields) if prev else Revision(**fields)
            out[rid] = replace(rev, updated_at=str(event.get("time") or rev.updated_at))
        return out

    def get(self, rid: str) -> Revision:
        revs = self.revisions()
        matches = [r for k, r in revs.items() if k.startswith(rid)] if rid else []
        if len(matches) != 1:
            known = ", ".join(revs) or "none"
            raise LlmctlError(
                f"no single revision {rid!r} in {self.path} (known: {known}); see `llmctl history`"
            )
        return matches[0]

    def active(self) -> Revision | None:
        return next((r for r in self.revisions().values() if r.state == "active"), None)

    def in_state(self, *states: str) -> list[Revision]:
        return [r for r in self.revisions().values() if r.state in states]

    def record(self, rev: Revision, state: str, note: str = "", **changes: Any) -> Revision:
        """Append ``rev`` in ``state``; durable when this returns."""
        if state not in STATES:
            raise ValueError(f"unknown revision state {state!r}")
        now = _now()
        rev = replace(rev, state=state, note=note, created_at=rev.created_at or now, **changes)
        line = json.dumps({"time": now, "revision": rev.to_dict()}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return replace(rev, updated_at=now)

    def applied(self, rev: Revision) -> Revision:
        """``llmctl up`` applied ``rev`` in place: it is active and every other active one is
        retired (a canary left over is rolled back). Unchanged revisions add no event."""
        known = self.revisions()
        now = known.get(rev.id)
        if now is not None and now.state == "active":
            return now
        for other in known.values():
            if other.id == rev.id:
                continue
            if other.state == "active":
                self.record(other, "retired", f"replaced in place by {rev.id}")
            elif other.state == "canary":
                self.record(other, "rolled-back", f"replaced in place by {rev.id}")
        base = now if now is not None else rev
        return self.record(replace(base, settings=rev.settings), "active", "applied by llmctl up")


def history_rows(revisions: Iterable[Revision]) -> list[dict[str, Any]]:
    """What ``llmctl history`` prints (and its JSON output), newest first."""
    rows = [
        {
            "id": r.id,
            "state": r.state,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "blueprint_hash": r.blueprint_hash[:16],
            "model_hash": r.model_hash,
            "prompt_hash": r.prompt_hash,
            "index_hash": r.index_hash[:16],
            "llm_version": r.llm_version,
            "note": r.note,
            "archive": r.archive,
        }
        for r in revisions
    ]
    return sorted(rows, key=lambda row: row["created_at"], reverse=True)


def record_up(state: Any, bp: Any, *, applied: bool = True) -> Revision | None:
    """After ``llmctl up`` on a local target: the revision its gateway config serves is active.

    ``applied``: the plan changed and was applied in place, which rebuilt Triton's repository
    and restarted what changed, so a rollout's routing no longer describes what runs: the
    routing file goes (the gateway answers everything with its config's revision). Without it
    (nothing changed) only an empty history learns the running revision. None when no gateway
    config exists.
    """
    from llmctl.gateway.config import load_config

    if not state.gateway_config.is_file():
        return None
    history = History(state.revisions_file)
    if not applied and history.revisions():
        return history.active()
    config = load_config(state.gateway_config)
    rev = revision_from_config(config, bp.section_hash("retrieval"))
    active = history.applied(rev)
    if applied:
        state.routing_file.unlink(missing_ok=True)
    return active
