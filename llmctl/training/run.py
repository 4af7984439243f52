"""``llmctl train``'s core: render, submit, follow and record a blueprint's training job.

The CLI only parses and renders; this module owns the order of things. A submission writes the
batch script into the training folder's ``jobs/`` (the folder sbatch runs in, so Slurm's log lands
there too), submits it, and only then names the script and its ``.json`` after the job id, each
written atomically: a failed ``sbatch`` leaves no trace of a job that does not exist. When the
job reaches a final state, ``record`` builds the run record from Slurm's measured times and the
artifact's own files and appends it to the history, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import LlmctlError
from llmctl.state import TrainingState
from llmctl.training import batch, history, slurm

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def state_of(bp: Blueprint, home: Path | None = None) -> TrainingState:
    return TrainingState.of(bp.name, home)


def estimate(bp: Blueprint) -> dict[str, float | None]:
    """The data scientist's estimate, in the units the run record measures."""
    return history.estimate_of(batch.require(bp))


def render_sbatch(bp: Blueprint, home: Path | None = None, python: str | None = None) -> str:
    state = state_of(bp, home)
    return batch.render(bp, batch.output_root(bp, state.artifacts_dir), python or sys.executable)


def test_only(
    bp: Blueprint, home: Path | None = None, python: str | None = None
) -> tuple[bool, str]:
    """Ask the cluster (``sbatch --test-only``) whether it would accept and when it would start
    the job, submitting nothing and writing nothing."""
    with tempfile.TemporaryDirectory(prefix="llmctl-train-") as d:
        script = Path(d) / "job.sbatch"
        script.write_text(render_sbatch(bp, home, python), encoding="utf-8")
        return slurm.test_only(script, cwd=Path(d))


@dataclass(frozen=True)
class Submission:
    job_id: str
    script: Path
    log: Path
    artifact: Path
    submitted_at: str

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) for k, v in self.__dict__.items()}


def submit(bp: Blueprint, home: Path | None = None, python: str | None = None) -> Submission:
    """Submit the blueprint's training job through sbatch; nothing is written if sbatch fails."""
    missing = slurm.missing_tools()
    if missing:
        raise slurm.SlurmError(
            f"Slurm's client tools are missing ({', '.join(missing)}): install slurm-wlm "
            "(`make system-deps` as root) and start a cluster (tools/slurm-local.sh start)"
        )
    state = state_of(bp, home)
    text = render_sbatch(bp, home, python)
    artifacts = batch.output_root(bp, state.artifacts_dir)
    state.jobs_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=state.jobs_dir, prefix=".submit-", suffix=".sbatch")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        job_id = slurm.submit(tmp, cwd=state.jobs_dir)
        script = state.job_file(job_id, ".sbatch")
        os.replace(tmp, script)
    finally:
        if tmp.exists():
            tmp.unlink()
    sub = Submission(
        job_id=job_id,
        script=script,
        log=state.jobs_dir / batch.log_name(job_id),
        artifact=artifacts / f"job-{job_id}",
        submitted_at=_now(),
    )
    doc = {
        **sub.to_dict(),
        "blueprint": bp.name,
        "blueprint_path": str(bp.path),
        "blueprint_hash": bp.hash,
        "recipe": batch.require(bp).recipe,
        "estimate": estimate(bp),
    }
    write_atomic(state.job_file(job_id, ".json"), json.dumps(doc, indent=2) + "\n")
    return sub


def submitted(bp: Blueprint, job_id: str | None, home: Path | None = None) -> dict[str, Any]:
    """The submission record of ``job_id``, or of the latest submission."""
    state = state_of(bp, home)
    if job_id is None:
        ids = sorted((p.stem for p in state.jobs_dir.glob("*.json") if p.stem.isdigit()), key=int)
        if not ids:
            raise LlmctlError(
                f"no training job submitted for {bp.name} (in {state.jobs_dir}); run "
                "`llmctl train submit BLUEPRINT` first"
            )
        job_id = ids[-1]
    path = state.job_file(job_id, ".json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LlmctlError(
            f"job {job_id} was not submitted by llmctl for {bp.name} (no {path})"
        ) from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _artifact(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(files with sha256 and size, metrics) of a finished run's artifact folder."""
    from llmctl.digest import sha256_file

    if not path.is_dir():
        return {}, None
    manifest_file = path / "MANIFEST.json"
    if manifest_file.is_file():
        files = json.loads(manifest_file.read_text(encoding="utf-8"))
        for rel, f in files.items():  # the manifest is checked, not trusted
            if sha256_file(path / rel) != f.get("sha256"):
                raise LlmctlError(f"{path / rel}: does not match its MANIFEST.json hash")
    else:
        files = {
            p.relative_to(path).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    return files, metrics


def record(bp: Blueprint, sub: dict[str, Any], info: slurm.JobInfo, home: Path | None = None):
    """Build the run record of a finished job and append it to the history (once)."""
    state = state_of(bp, home)
    artifact = Path(sub["artifact"])
    files, metrics = _artifact(artifact) if info.state == "COMPLETED" else ({}, None)
    cpu_used_s, cpu_used_source = info.total_cpu_s, "slurm accounting (TotalCPU)"
    if cpu_used_s is None and metrics and metrics.get("cpu_seconds") is not None:
        cpu_used_s, cpu_used_source = float(metrics["cpu_seconds"]), "the job's own getrusage"
    rec = {
        "format": history.RECORD_FORMAT,
        "job_id": info.job_id,
        "state": info.state,
        "exit_code": info.exit_code,
        "blueprint": bp.name,
        "blueprint_hash": sub.get("blueprint_hash"),
        "recipe": sub.get("recipe"),
        "partition": info.partition,
        "nodes": info.nodes,
        "submitted_at": sub.get("submitted_at"),
        "start": info.start,
        "end": info.end,
        "recorded_at": _now(),
        "elapsed_s": info.elapsed_s,
        "duration_hours": history.hours(info.elapsed_s, 1),
        "alloc_cpus": info.alloc_cpus,
        "alloc_gpus": info.alloc_gpus,
        "gpu_hours": history.hours(info.elapsed_s, info.alloc_gpus),
        "cpu_hours": history.hours(info.elapsed_s, info.alloc_cpus),
        "cpu_hours_used": None if cpu_used_s is None else round(cpu_used_s / 3600, 6),
        "cpu_hours_used_source": cpu_used_source if cpu_used_s is not None else None,
        "times_source": info.source,
        "estimate": sub.get("estimate") or estimate(bp),
        "artifact": {
            "path": str(artifact) if files else None,
            "hash": history.artifact_hash(files) if files else None,
            "files": {p: f["sha256"] for p, f in files.items()},
        },
        "metrics": metrics,
        "log": str(state.jobs_dir / batch.log_name(info.job_id)),
    }
    return history.append(state, rec)


@dataclass
class Status:
    """A job's state now and, once it finished, its run record."""

    job: slurm.JobInfo
    record: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job.to_dict(), "record": self.record}


def status(bp: Blueprint, job_id: str | None = None, home: Path | None = None) -> Status:
    """Ask Slurm about the job (default: the latest submitted); record it if it just finished."""
    sub = submitted(bp, job_id, home)
    done = history.find(state_of(bp, home), sub["job_id"])
    try:
        info = slurm.job_info(sub["job_id"])
    except slurm.SlurmError:
        if done is None:
            raise
        info = slurm.JobInfo(sub["job_id"], done["state"], source="history")
        return Status(info, done)
    if info.finished and done is None:
        info = slurm.final_times(info)
        done = record(bp, sub, info, home)
    return Status(info, done)


def follow(
    bp: Blueprint,
    job_id: str,
    *,
    home: Path | None = None,
    on_state: Callable[[slurm.JobInfo], None] | None = None,
    timeout_s: float | None = None,
    poll_s: float = 2.0,
) -> Status:
    """Wait for the job's final state, then record it."""
    sub = submitted(bp, job_id, home)
    info = slurm.wait(job_id, poll_s=poll_s, timeout_s=timeout_s, on_state=on_state)
    done = history.find(state_of(bp, home), job_id) or record(bp, sub, info, home)
    return Status(info, done)
