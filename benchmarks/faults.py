"""Fault injection against the real local stack: what each fault costs the people asking.

    .venv/bin/python benchmarks/faults.py [--blueprint blueprints/hr-policy-assistant.yaml]
                                          [--clients 2] [--json FILE]

It starts the blueprint's local stack (Triton, the gateway, the watchdog) in a private
LLMCTL_HOME with ``llmctl up`` and ``llmctl ingest`` (from a copy of the blueprint whose per-user
rate limit is lifted, so retries measure the fault and not the limiter), keeps ``--clients`` callers asking (plain
and streamed in turn, retrying a refused request after its Retry-After like a well-behaved
client), and injects one fault at a time:

- ``triton-killed``: SIGKILL to Triton's process group (the watchdog restarts it, same ports);
- ``triton-hung``: SIGSTOP to Triton (the gateway fails fast, the watchdog sees it hung);
- ``audit-immutable``: ``chattr +i`` on the audit file for 5 s (root only; skipped otherwise);
- ``gateway-killed``: SIGKILL to the gateway (the watchdog restarts it on its port).

Per fault it prints seconds from the fault to the first refusal a caller received, seconds to
recovery (the first answer received after the last refusal) and requests lost. A request is lost when its caller never got an answer
within 120 s of retrying, when an answer reached it without a completion record in the audit
trail, or when it got a 500 or a non-JSON error. Connection errors while the gateway itself is
down are counted apart: nothing was processed, and the retry succeeds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = (
    "How many days of annual leave do employees get?",
    "Who approves expenses above the usual limit?",
)


@dataclass
class Attempt:
    t: float  # when the caller learned the outcome (the response ended)
    status: int  # 0: connection error
    kind: str  # answered | refused | error | connection
    request_id: str = ""


@dataclass
class Figures:
    fault: str
    first_refusal_s: float | None
    recovery_s: float | None
    lost: int
    connection_errors: int
    refusals: int
    detail: str = ""


@dataclass
class Load:
    url: str
    token: str
    clients: int
    attempts: list[Attempt] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._client, args=(i,)) for i in range(self.clients)]
        for t in threads:
            t.start()
        return threads

    def _client(self, n: int) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, timeout=60, headers=headers) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                self._logical(client, QUESTIONS[i % len(QUESTIONS)], stream=(i + n) % 2 == 0)

    def _logical(self, client: httpx.Client, question: str, stream: bool) -> None:
        """One request as its caller sees it: retried until answered or given up."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            attempt, wait = self._attempt(client, question, stream)
            with self.lock:
                self.attempts.append(attempt)
                if attempt.kind == "answered":
                    self.answered.append(attempt.request_id)
                if attempt.kind == "error":
                    self.lost.append(f"{attempt.status} {attempt.request_id}")
            if attempt.kind in ("answered", "error"):
                return
            time.sleep(wait)
        with self.lock:
            self.lost.append(f"never answered: {question}")

    def _attempt(self, client: httpx.Client, question: str, stream: bool) -> tuple[Attempt, float]:
        body = {"question": question, "stream": stream}
        try:
            with client.stream("POST", "/v1/ask", json=body) as r:
                raw = r.read().decode()
                rid = r.headers.get("x-request-id", "")
                status = r.status_code
                ctype = r.headers.get("content-type", "")
        except httpx.HTTPError:
            return Attempt(time.monotonic(), 0, "connection"), 0.5
        t = time.monotonic()
        if status == 200 and stream:
            if "event: final" in raw:
                return Attempt(t, 200, "answered", rid), 0
            return Attempt(t, 200, "refused", rid), 0.5  # ended with an error event: retry
        if status == 200:
            return Attempt(t, 200, "answered", rid), 0
        if not ctype.startswith("application/json") or status == 500:
            return Attempt(t, status, "error", rid), 0
        retry = float(r.headers.get("retry-after", "1"))
        return Attempt(t, status, "refused", rid), min(retry, 1.0)


def _llmctl(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "llmctl", *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"llmctl {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return out.stdout


def _record(state_dir: Path, name: str) -> dict:
    return json.loads((state_dir / "components" / f"{name}.json").read_text())


def _figures(load: Load, fault: str, t0: float, t_end: float, detail: str = "") -> Figures:
    with load.lock:
        window = [a for a in load.attempts if t0 <= a.t <= t_end]
    bad = [a for a in window if a.kind != "answered"]
    first = min((a.t for a in bad), default=None)
    last_bad = max((a.t for a in bad), default=None)
    recovered = min(
        (a.t for a in window if a.kind == "answered" and last_bad is not None and a.t > last_bad),
        default=None,
    )
    return Figures(
        fault=fault,
        first_refusal_s=None if first is None else round(first - t0, 2),
        recovery_s=None if recovered is None else round(recovered - t0, 2),
        lost=sum(a.kind == "error" for a in window),
        connection_errors=sum(a.kind == "connection" for a in window),
        refusals=sum(a.kind == "refused" for a in window),
        detail=detail,
    )


def _wait_answering(
    load: Load, since: float, steady_s: float = 3.0, timeout_s: float = 180
) -> None:
    """Until every attempt of the last ``steady_s`` seconds was answered."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = time.monotonic()
        with load.lock:
            recent = [a for a in load.attempts if a.t >= max(since, now - steady_s)]
        if now - since > steady_s and recent and all(a.kind == "answered" for a in recent):
            return
        time.sleep(0.5)
    raise SystemExit("the stack did not recover within the timeout")


def _unlimited_copy(path: Path, folder: Path) -> Path:
    """The blueprint with its per-user rate limit lifted (the callers' retries through a fault
    would otherwise turn into 429s, which measure the limiter, not the fault) and its source
    paths made absolute; everything else as written."""
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.setdefault("network", {})["rateLimit"] = {"requestsPerMinute": 60000, "burst": 1000}
    for source in doc.get("retrieval", {}).get("sources", []):
        source["path"] = str((path.parent / source["path"]).resolve())
    for gate in (doc.get("gates") or {}).values():
        if isinstance(gate, dict) and "evalSet" in gate:
            gate["evalSet"] = str((path.parent / gate["evalSet"]).resolve())
    copy = folder / path.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return copy


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blueprint", default=str(ROOT / "blueprints" / "hr-policy-assistant.yaml"))
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    from llmctl.blueprint import load_blueprint
    from llmctl.gateway.audit import read_trail
    from llmctl.gateway.auth import mint_dev_token
    from llmctl.state import StackState

    home = Path(tempfile.mkdtemp(prefix="llmctl-faults-"))
    args.blueprint = str(_unlimited_copy(Path(args.blueprint), home))
    bp = load_blueprint(args.blueprint)
    env = {**os.environ, "LLMCTL_HOME": str(home)}
    state = StackState.of(bp.name, "local", home)
    figures: list[Figures] = []
    try:
        print(f"starting the stack of {bp.name} in {home} ...", flush=True)
        _llmctl("up", args.blueprint, "-y", env=env)
        _llmctl("ingest", args.blueprint, env=env)
        port = _record(state.dir, "gateway")["ports"]["http"]
        token = mint_dev_token(state.dir, user="fault-bench", groups=["all-employees"])
        load = Load(f"http://127.0.0.1:{port}", token, args.clients)
        threads = load.run()
        _wait_answering(load, time.monotonic())

        def fault(name: str, inject, undo=None, hold_s: float = 0.0, detail: str = "") -> None:
            print(f"fault: {name}", flush=True)
            t0 = time.monotonic()
            inject()
            if hold_s:
                time.sleep(hold_s)
            if undo is not None:
                undo()
            _wait_answering(load, t0)
            figures.append(_figures(load, name, t0, time.monotonic(), detail))

        def signal_group(component: str, sig: int) -> None:
            os.killpg(_record(state.dir, component)["pgid"], sig)

        fault("triton-killed", lambda: signal_group("triton", signal.SIGKILL))
        fault("triton-hung", lambda: signal_group("triton", signal.SIGSTOP))
        audit = state.audit_file
        if os.geteuid() == 0 and shutil.which("chattr"):
            fault(
                "audit-immutable",
                lambda: subprocess.run(["chattr", "+i", str(audit)], check=True),
                lambda: subprocess.run(["chattr", "-i", str(audit)], check=True),
                hold_s=5.0,
                detail="sink unwritable for 5 s",
            )
        else:
            print("skipping audit-immutable: chattr +i needs root", flush=True)
        fault("gateway-killed", lambda: signal_group("gateway", signal.SIGKILL))

        load.stop.set()
        for t in threads:
            t.join(timeout=130)
        time.sleep(1.0)
        recorded = {r["request_id"] for r in read_trail(audit) if r.get("stage") != "intent"}
        unrecorded = [rid for rid in load.answered if rid not in recorded]
        status = json.loads(_llmctl("status", args.blueprint, "-o", "json", env=env))
    finally:
        with contextlib.suppress(SystemExit):
            _llmctl("down", args.blueprint, env=env)
        shutil.rmtree(home, ignore_errors=True)

    print()
    print(
        f"{'fault':<17} {'first refusal':>13} {'recovered':>10} {'refused':>8} "
        f"{'conn. errors':>12} {'lost':>5}"
    )
    for f in figures:
        first = "-" if f.first_refusal_s is None else f"{f.first_refusal_s:.2f} s"
        rec = "-" if f.recovery_s is None else f"{f.recovery_s:.2f} s"
        print(
            f"{f.fault:<17} {first:>13} {rec:>10} {f.refusals:>8} {f.connection_errors:>12} "
            f"{f.lost:>5}"
        )
    lost = len(load.lost) + len(unrecorded)
    restarts = {c["name"]: c.get("restarts", 0) for c in status.get("components", [])}
    print(
        f"\nanswered {len(load.answered)} requests; lost {lost} "
        f"({len(load.lost)} without an answer or with a 500/non-JSON error, "
        f"{len(unrecorded)} answered without an audit record)"
    )
    print(f"watchdog restarts: {restarts}; stack state after the faults: {status.get('state')}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"faults": [asdict(f) for f in figures], "lost": lost, "restarts": restarts},
                indent=2,
            )
        )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
