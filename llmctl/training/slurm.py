"""The one place llmctl talks to Slurm: ``sbatch``, ``squeue``, ``scontrol`` and ``sacct``.

Every call runs the real client tools with ``SLURM_CONF`` from the environment (``tools/slurm-local.sh
env`` prints it for the local one-node cluster), so one seam decides how a job is submitted, how
its state is read and where its measured times come from:

- state: ``squeue`` while the job is queued or running, then ``scontrol show job`` (the controller
  keeps finished jobs for ``MinJobAge``), then ``sacct``;
- times: ``sacct`` when the cluster has accounting (slurmdbd: ``TotalCPU``, ``AllocTRES``), else
  ``sacct --completion`` (``JobCompType=jobcomp/filetxt``: elapsed time and allocated CPUs, but no
  measured CPU time), else the controller's own ``StartTime``/``EndTime``. Which one answered is
  recorded as ``source``, so a reader knows what the hours are made of.

GPU-hours are *allocated* GPU-hours (GPUs in the allocation x elapsed): what a cluster charges and
what the next capacity plan must budget for, whether the job kept the GPUs busy or not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError

TOOLS = ("sbatch", "squeue", "scontrol", "sacct")
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
    }
)


class SlurmError(LlmctlError):
    """A Slurm client tool failed or is missing; the message says which and what to do."""


def missing_tools() -> list[str]:
    """The Slurm client tools not on PATH (empty when all are there)."""
    return [t for t in TOOLS if shutil.which(t) is None]


def _run(args: list[str], *, cwd: Path | None = None, timeout_s: float = 60.0) -> str:
    missing = [args[0]] if shutil.which(args[0]) is None else []
    if missing:
        raise SlurmError(
            f"{args[0]} not found: install Slurm's client tools (Debian: slurm-client; "
            "`make system-deps` as root) or run where the cluster's tools are"
        )
    try:
        proc = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(
            f"{args[0]} did not answer in {timeout_s:.0f} s; is slurmctld up?"
        ) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        message = detail[-1] if detail else f"exit {proc.returncode}"
        raise SlurmError(f"{args[0]} failed: {message}")
    return proc.stdout


@dataclass(frozen=True)
class JobInfo:
    """What Slurm says about one job. ``elapsed_s`` and the allocation come from ``source``."""

    job_id: str
    state: str
    reason: str = ""
    exit_code: str = ""
    partition: str = ""
    nodes: str = ""
    start: str = ""
    end: str = ""
    elapsed_s: float | None = None
    alloc_cpus: int = 0
    alloc_gpus: int = 0
    total_cpu_s: float | None = None  # measured CPU time, only with accounting (slurmdbd)
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit(script: Path, *, cwd: Path) -> str:
    """Submit ``script`` from ``cwd`` (where its relative ``--output`` lands); the job id."""
    out = _run(["sbatch", "--parsable", str(script)], cwd=cwd).strip()
    job_id = out.split(";", 1)[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {out!r}, not a job id")
    return job_id


def test_only(script: Path, *, cwd: Path) -> tuple[bool, str]:
    """``sbatch --test-only``: would the cluster accept and schedule the script, and its answer
    (when it would start, or why it cannot). Submits nothing."""
    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch not found: install Slurm's client tools (make system-deps)")
    proc = subprocess.run(
        ["sbatch", "--test-only", str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    message = " ".join((proc.stderr + proc.stdout).split())
    return proc.returncode == 0, message


def cancel(job_id: str) -> None:
    _run(["scancel", job_id])


def _fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\S+?)=(\S*)", line))


def _seconds(value: str) -> float | None:
    """Slurm durations: [D-]HH:MM:SS, MM:SS(.mmm)."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", value.strip())
    if not m:
        return None
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi) * 60 + float(s)


def _tres_gpus(tres: str) -> int:
    m = re.search(r"gres/gpu(?::[^=,]+)?=(\d+)", tres or "")
    return int(m.group(1)) if m else 0


def _between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None


def _queued(job_id: str) -> JobInfo | None:
    out = _run(["squeue", "-h", "-j", job_id, "-o", "%i|%T|%r|%P|%N"], timeout_s=30).strip()
    if not out:
        return None
    jid, state, reason, partition, nodes = (out.splitlines()[0].split("|") + [""] * 5)[:5]
    return JobInfo(jid, state, reason, partition=partition, nodes=nodes, source="squeue")


def _controller(job_id: str) -> JobInfo | None:
    try:
        out = _run(["scontrol", "-o", "show", "job", job_id], timeout_s=30)
    except SlurmError as exc:
        if "Invalid job id" in str(exc):
            return None
        raise
    f = _fields(out)
    if "JobState" not in f:
        return None
    start, end = f.get("StartTime", ""), f.get("EndTime", "")
    tres = f.get("AllocTRES") or f.get("TRES", "")
    state = f["JobState"]
    return JobInfo(
        job_id=f.get("JobId", job_id),
        state=state,
        reason=f.get("Reason", ""),
        exit_code=f.get("ExitCode", ""),
        partition=f.get("Partition", ""),
        nodes=f.get("NodeList", ""),
        start=start,
        end=end if state in FINAL_STATES else "",
        elapsed_s=_seconds(f.get("RunTime", "")),
        alloc_cpus=int(f.get("NumCPUs", "0") or 0),
        alloc_gpus=_tres_gpus(tres),
        source="scontrol",
        extra={"TRES": tres, "StdOut": f.get("StdOut", "")},
    )


SACCT_FIELDS = (
    "JobID,State,ExitCode,Partition,NodeList,Start,End,ElapsedRaw,NCPUS,AllocTRES,TotalCPU"
)
SACCT_COMPLETION_FIELDS = "JobID,State,Partition,NodeList,Start,End,Elapsed,NCPUS"


def _accounting(job_id: str) -> JobInfo | None:
    """The job's line from accounting (slurmdbd), else from job-completion data."""
    try:
        out = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", SACCT_FIELDS])
        source = "sacct"
        names = SACCT_FIELDS.split(",")
    except SlurmError:
        try:
            out = _run(["sacct", "-c", "-n", "-P", "-j", job_id, "-o", SACCT_COMPLETION_FIELDS])
        except SlurmError:
            return None
        source = "sacct-completion"
        names = SACCT_COMPLETION_FIELDS.split(",")
    rows = [dict(zip(names, line.split("|"), strict=False)) for line in out.splitlines() if line]
    rows = [r for r in rows if r.get("JobID") == job_id]
    if not rows:
        return None
    r = rows[-1]
    elapsed = (
        float(r["ElapsedRaw"])
        if r.get("ElapsedRaw", "").isdigit()
        else _seconds(r.get("Elapsed", ""))
    )
    return JobInfo(
        job_id=job_id,
        state=r.get("State", "").split(" ")[0],
        exit_code=r.get("ExitCode", ""),
        partition=r.get("Partition", ""),
        nodes=r.get("NodeList", ""),
        start=r.get("Start", ""),
        end=r.get("End", ""),
        elapsed_s=elapsed,
        alloc_cpus=int(r.get("NCPUS") or 0),
        alloc_gpus=_tres_gpus(r.get("AllocTRES", "")),
        total_cpu_s=_seconds(r["TotalCPU"]) if r.get("TotalCPU") else None,
        source=source,
    )


def job_info(job_id: str) -> JobInfo:
    """The job's state now, from whichever of squeue, scontrol and sacct still knows it."""
    info = _queued(job_id)
    if info is not None and not info.finished and info.state not in ("COMPLETING",):
        richer = _controller(job_id)
        return richer or info
    info = _controller(job_id) or _accounting(job_id)
    if info is None:
        raise SlurmError(
            f"Slurm does not know job {job_id} (neither queued, nor in the controller, nor in "
            "accounting); check SLURM_CONF points at the cluster it was submitted to"
        )
    return info


def final_times(info: JobInfo) -> JobInfo:
    """The finished job's measured times: accounting when it has them, else the controller's
    start and end (elapsed = end - start, which RunTime rounds to seconds anyway)."""
    acct = _accounting(info.job_id)
    if acct is not None and acct.elapsed_s is not None:
        return JobInfo(
            **{
                **acct.to_dict(),
                "reason": info.reason,
                "exit_code": acct.exit_code or info.exit_code,
                "alloc_gpus": acct.alloc_gpus or info.alloc_gpus,
                "alloc_cpus": acct.alloc_cpus or info.alloc_cpus,
                "extra": info.extra,
            }
        )
    elapsed = _between(info.start, info.end) if info.start and info.end else info.elapsed_s
    return JobInfo(**{**info.to_dict(), "elapsed_s": elapsed})


def wait(
    job_id: str,
    *,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    on_state: Callable[[JobInfo], None] | None = None,
) -> JobInfo:
    """Follow the job until it reaches a final state; ``on_state`` hears every change of state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = ""
    while True:
        info = job_info(job_id)
        if info.state != last and on_state is not None:
            on_state(info)
        last = info.state
        if info.finished:
            return final_times(info)
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(
                f"job {job_id} still {info.state} after {timeout_s:.0f} s; `llmctl train status` "
                "follows it later"
            )
        time.sleep(poll_s)


def conf_path() -> str | None:
    """The SLURM_CONF the tools will read, for messages (None: the built-in default)."""
    return os.environ.get("SLURM_CONF")
