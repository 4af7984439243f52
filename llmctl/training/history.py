"""A blueprint's training history: one run record per finished job, and actual vs estimated hours.

This is the Slurm operator's hand-back (seed 000 step 4): the artifact's hashes plus the run's
metadata (metrics, duration, resource usage), kept where the architect's tools read it, so the
next capacity plan starts from measured GPU-hours instead of the data scientist's guess.
``history.jsonl`` (``TrainingState.history_file``) is append-only; each record is one line written
with a single ``write`` under a lock, so a reader never sees half a record and a job is never
recorded twice. This module reads no Slurm and no torch: ``llmctl size`` and the verify report
import it cheaply.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.state import TrainingState

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint
    from llmctl.blueprint.training import Training

RECORD_FORMAT = 1


@contextlib.contextmanager
def locked(state: TrainingState) -> Iterator[None]:
    state.dir.mkdir(parents=True, exist_ok=True)
    with open(state.lock_file, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(state: TrainingState) -> list[dict[str, Any]]:
    """Every record, oldest first; a torn last line (a crash mid-write elsewhere) is skipped."""
    try:
        lines = state.history_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def find(state: TrainingState, job_id: str) -> dict[str, Any] | None:
    for rec in reversed(read(state)):
        if str(rec.get("job_id")) == str(job_id):
            return rec
    return None


def append(state: TrainingState, record: dict[str, Any]) -> dict[str, Any]:
    """Append ``record`` unless its job is recorded already; returns the record on file."""
    line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str) + "\n"
    with locked(state):
        existing = find(state, str(record["job_id"]))
        if existing is not None:
            return existing
        fd = os.open(state.history_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


def artifact_hash(files: dict[str, dict[str, Any]]) -> str:
    """One hash for the whole artifact: sha256 over the sorted (path, sha256) pairs."""
    pairs = sorted((p, f.get("sha256", "")) for p, f in files.items())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def hours(elapsed_s: float | None, count: int) -> float | None:
    return None if elapsed_s is None else round(elapsed_s * count / 3600, 6)


def _ratio(actual: float | None, estimate: float | None) -> float | None:
    if actual is None or not estimate:
        return None
    return round(actual / estimate, 3)


def actual_vs_estimate(
    blueprint: str, estimate: dict[str, float | None], home: Path | None = None
) -> dict[str, Any] | None:
    """The last finished run's measured hours beside the blueprint's estimate, plus totals over
    every run; None when nothing has run. ``estimate`` holds hours, gpu_hours, cpu_hours."""
    records = read(TrainingState.of(blueprint, home))
    if not records:
        return None
    last = records[-1]
    actual = {
        "hours": last.get("duration_hours"),
        "gpu_hours": last.get("gpu_hours"),
        "cpu_hours": last.get("cpu_hours"),
    }
    return {
        "runs": len(records),
        "last_job_id": last.get("job_id"),
        "last_state": last.get("state"),
        "actual": actual,
        "estimate": estimate,
        "ratio": {k: _ratio(actual[k], estimate.get(k)) for k in actual},
        "total_gpu_hours": round(sum(float(r.get("gpu_hours") or 0) for r in records), 6),
        "total_cpu_hours": round(sum(float(r.get("cpu_hours") or 0) for r in records), 6),
    }


def hours_lines(summary: dict[str, Any]) -> list[str]:
    """The same as text, for `llmctl size` and the verify report."""
    a, e, r = summary["actual"], summary["estimate"], summary["ratio"]

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    line = (
        f"training (last of {summary['runs']} run(s), job {summary['last_job_id']} "
        f"{summary['last_state']}): {fmt(a['hours'])} h actual vs {fmt(e.get('hours'))} h "
        f"estimated; GPU-hours {fmt(a['gpu_hours'])} vs {fmt(e.get('gpu_hours'))}; "
        f"CPU-hours {fmt(a['cpu_hours'])} vs {fmt(e.get('cpu_hours'))}"
    )
    if r.get("hours") is not None:
        line += f" (x{r['hours']:g} of the estimate)"
    return [line]


def for_blueprint(bp: Blueprint, home: Path | None = None) -> dict[str, Any] | None:
    """``actual_vs_estimate`` for a blueprint with a training section (None: no section, or
    nothing has run yet): what ``llmctl size`` and the verify report add."""
    if bp.training is None:
        return None
    return actual_vs_estimate(bp.name, estimate_of(bp.training), home)


def estimate_of(tr: Training) -> dict[str, float | None]:
    """The data scientist's estimate, in the units a run record measures."""
    rs = tr.resources
    return {
        "hours": rs.expected_hours,
        "gpu_hours": rs.expected_gpu_hours,
        "cpu_hours": rs.expected_cpu_hours,
    }
