"""The load gate: run a Locust profile against the service and judge its figures.

Locust monkey-patches the standard library with gevent the moment it is imported, which would
break the rest of ``llmctl verify`` (threads, subprocesses, httpx). So the profile runs in a child
process (``python -m llmctl.gates.load_runner``) that writes its figures as JSON and reports
progress as JSON lines on stdout; this module starts it, forwards progress and judges the result.
Judging is a pure function of recorded figures, so it is unit-tested without a stack.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmctl.gates.results import ERROR, Check, GateResult, ge, le

#: Request types the load profiles fire (see loadtests/gateway_user.py).
ASK, TTFT, ITL, TPS = "ASK", "TTFT", "ITL", "TPS"

LoadProgress = Callable[[dict[str, Any]], None]

GATEWAY_USER = "loadtests/gateway_user.py:GatewayUser"
TRITON_USER = "loadtests/triton_user.py:TritonUser"


@dataclass
class Identity:
    """A simulated employee: a subject, its groups and a bearer token the gateway accepts."""

    user: str
    groups: list[str]
    token: str


@dataclass
class LoadSpec:
    """Everything the child process needs. The child gets it whole over a pipe; the evidence
    folder keeps ``record()``, the same document with each token replaced by its hash, so no
    bearer token is ever at rest."""

    host: str
    user_class: str = GATEWAY_USER
    users: int = 1
    spawn_rate: float = 1.0
    duration_s: float = 10.0
    identities: list[Identity] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    wait_min_s: float = 1.0
    wait_max_s: float = 3.0
    max_tokens: int = 64
    request_timeout_s: float = 120.0
    drain_s: float = 120.0  # after the duration, answers in flight may finish for this long
    progress_interval_s: float = 2.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def record(self) -> dict[str, Any]:
        """``to_dict()`` without secrets: identities keep user, groups and a token hash."""
        import hashlib

        d = self.to_dict()
        for ident in d["identities"]:
            token = ident.pop("token", "")
            ident["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()[:16]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoadSpec:
        d = dict(d)
        d["identities"] = [Identity(**i) for i in d.get("identities", [])]
        return cls(**d)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1): the smallest value with at least q of them at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered) - 1e-9) - 1))
    return float(ordered[rank])


def figures_from_samples(
    samples: Sequence[dict[str, Any]], duration_s: float, users: int, spawn_rate: float
) -> dict[str, Any]:
    """The gate's figures from raw request events ``{kind, t, ms, ok}``.

    Throughput counts successful end-to-end requests over the measured duration (the load
    window plus the drain of answers in flight at its end); error rate is
    failed end-to-end requests over all of them. TTFT/ITL/TPS come only from successful answers.
    """
    asks = [s for s in samples if s["kind"] == ASK]
    ok = [s["ms"] for s in asks if s.get("ok")]
    failures = len(asks) - len(ok)

    def kind(k: str) -> list[float]:
        return [float(s["ms"]) for s in samples if s["kind"] == k and s.get("ok", True)]

    ttft, itl, tps = kind(TTFT), kind(ITL), kind(TPS)
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return {
        "users": users,
        "spawn_rate": spawn_rate,
        "duration_s": round(duration_s, 3),
        "requests": len(asks),
        "failures": failures,
        "error_rate": (failures / len(asks)) if asks else None,
        "throughput_rps": (len(ok) / duration_s) if duration_s > 0 else None,
        "p50_latency_ms": percentile(ok, 0.50),
        "p95_latency_ms": percentile(ok, 0.95),
        "p99_latency_ms": percentile(ok, 0.99),
        "max_latency_ms": max(ok) if ok else None,
        "p50_ttft_ms": percentile(ttft, 0.50),
        "p95_ttft_ms": percentile(ttft, 0.95),
        "p50_itl_ms": percentile(itl, 0.50),
        "p95_itl_ms": percentile(itl, 0.95),
        "mean_output_tps": mean(tps),
        "p50_output_tps": percentile(tps, 0.50),
    }


def evaluate(figures: dict[str, Any], gate: Any) -> list[Check]:
    """Compare figures with a ``LoadGate`` (thresholds from ``bp.gates_for(target).load``)."""
    return [
        le("p95_latency_ms", figures.get("p95_latency_ms"), gate.p95_latency_ms, " ms"),
        le("p95_ttft_ms", figures.get("p95_ttft_ms"), gate.p95_ttft_ms, " ms"),
        le("error_rate", figures.get("error_rate"), gate.max_error_rate),
        ge("throughput_rps", figures.get("throughput_rps"), gate.min_throughput_rps, " req/s"),
    ]


def run_profile(
    spec: LoadSpec,
    *,
    on_progress: LoadProgress | None = None,
    workdir: Path | None = None,
    python: str = sys.executable,
    grace_s: float = 180.0,
) -> dict[str, Any]:
    """Run one Locust profile in a child process; return its result document.

    The result holds ``figures`` (see ``figures_from_samples``), ``samples`` (per-event timings
    for the report's plots), ``responses`` (what each request got back, compliance evidence) and
    Locust's own ``locust_stats`` for comparison.
    """
    # absolute: the child runs in this folder, and a relative --report must not move with it
    work = Path(workdir or tempfile.mkdtemp(prefix="llmctl-load-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = work / "load-spec.json", work / "load-result.json"
    spec_path.write_text(json.dumps(spec.record(), indent=2))  # the evidence: no tokens
    env = dict(os.environ)
    argv = [python, "-m", "llmctl.gates.load_runner", "-", str(out_path)]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
        env=env,
    )
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # a child that died at once reports below
        proc.stdin.write(json.dumps(spec.to_dict()))  # tokens travel over the pipe only
        proc.stdin.close()
    deadline = time.monotonic() + spec.duration_s + spec.drain_s + grace_s
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if on_progress is not None:
            on_progress(event)
        if time.monotonic() > deadline:
            proc.kill()
            break
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0 or not out_path.exists():
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"load runner exited with {proc.returncode}: {tail}")
    return json.loads(out_path.read_text())


def load_gate(result: dict[str, Any] | None, gate: Any, error: str | None = None) -> GateResult:
    """The gate's verdict from a runner result (or the error that kept it from running)."""
    if result is None:
        return GateResult("load", ERROR, error or "the load profile did not run")
    figures = dict(result["figures"])
    figures["thresholds"] = {
        "p95_latency_ms": gate.p95_latency_ms,
        "p95_ttft_ms": gate.p95_ttft_ms,
        "max_error_rate": gate.max_error_rate,
        "min_throughput_rps": gate.min_throughput_rps,
    }
    figures["errors"] = result.get("errors", {})
    return GateResult.from_checks("load", evaluate(result["figures"], gate), figures)
