"""What the compliance checks read: the ``Evidence`` of one run and the files behind it.

Evidence points at files (responses, audit trail) instead of holding them, so a test or an
auditor can tamper with a recorded run and re-judge it; ``evidence.json`` is the saved pointer set
(``save_evidence`` / ``load_evidence``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Evidence:
    """Paths and figures the compliance checks read."""

    responses_file: Path
    audit_file: Path | None = None
    listeners: dict[str, list[str]] | None = None  # component -> ["127.0.0.1:8000", ...]
    endpoints: dict[str, str] = field(default_factory=dict)  # what the stack's clients call
    load_figures: dict[str, Any] | None = None
    load_thresholds: Any = None  # LoadGate
    doc_acls: dict[str, Sequence[str]] = field(default_factory=dict)
    manifests: dict[str, list[dict[str, Any]] | str] = field(
        default_factory=dict
    )  # target -> docs or why not
    # a remote run: the gateway the audit records (in ``audit_file``) were read from over HTTP,
    # and why they could not be, if so; None: ``audit_file`` is the gateway's own trail
    audit_origin: str | None = None
    audit_error: str | None = None


def write_responses(path: Path, responses: Iterable[dict[str, Any]]) -> int:
    """One JSON line per response (sorted keys, so two runs diff cleanly); returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in responses:
            fh.write(json.dumps(r, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every non-blank line of a JSONL file, parsed."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


def read_audit(path: Path) -> list[dict[str, Any]]:
    """The whole audit trail of ``path``, oldest first: its archive (sealed and compressed
    files), rotated files of the older numbered scheme, then the live file."""
    from llmctl.gateway.audit import read_trail

    return read_trail(path)


def save_evidence(evidence_dir: Path, ev: Evidence) -> None:
    """What the compliance gate is about to read (except the big files it points at)."""
    doc = {
        "responses_file": str(ev.responses_file),
        "audit_file": str(ev.audit_file),
        "audit_origin": ev.audit_origin,
        "audit_error": ev.audit_error,
        "listeners": ev.listeners,
        "endpoints": ev.endpoints,
        "load_figures": ev.load_figures,
        "doc_acls": ev.doc_acls,
        "manifests": {
            k: (v if isinstance(v, str) else f"{len(v)} manifests") for k, v in ev.manifests.items()
        },
    }
    (evidence_dir / "evidence.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


def load_evidence(evidence_dir: Path, load_thresholds: Any = None) -> Evidence:
    """The Evidence a previous run saved (to re-judge it, e.g. after planting a violation)."""
    doc = json.loads((evidence_dir / "evidence.json").read_text())
    return Evidence(
        responses_file=Path(doc["responses_file"]),
        audit_file=Path(doc["audit_file"]) if doc.get("audit_file") else None,
        listeners=doc.get("listeners"),
        endpoints=doc.get("endpoints") or {},
        load_figures=doc.get("load_figures"),
        load_thresholds=load_thresholds,
        doc_acls=doc.get("doc_acls") or {},
        audit_origin=doc.get("audit_origin"),
        audit_error=doc.get("audit_error"),
    )
