"""The stack's watchdog: restarts a component that died or hung, on the same argv and ports.

``LocalTarget.apply`` starts one per stack, as the last component (``watchdog_spec``)::

    python -m llmctl.local.watchdog --state-dir <stack state dir>

About once a second it takes the stack's lock *without blocking* (the ``.lock`` flock that
``up``/``down`` hold while they change the stack) and, only if it got it, looks at each recorded
component. One that is dead, stopped (process state T) or whose health probe timed out several
times in a row is killed (its whole process group) and started again from its record, with the same
argv, ports, working directory and log, so nothing configured with its URLs (the gateway names
Triton's) needs a restart. After a Triton restart the models of ``stack.json`` are loaded again.
A failed attempt waits 1, 2, 4 ... 30 s before the next. Each restart is counted in the record
(``restarts``, ``last_restart_at``, ``last_exit``) and logged to ``logs/watchdog.log``.

Health: the watchdog serves nothing; it rewrites a heartbeat file (``components/watchdog.heartbeat``)
every tick, also while a restart is in progress, and the supervisor calls it hung when the file is
older than ``HEARTBEAT_MAX_AGE_S``.

Environment: the watchdog runs with the environment of the ``llmctl up`` that started it, and a
record holds only what a component's environment changes in it (``ComponentRecord.env``), so no
secret of the user's shell is written to disk; a component whose changes include a secret-looking
variable is not restarted (its record lists the names, never the values).

``down`` stops the watchdog before it takes the lock, so it never restarts what ``down`` stops.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.errors import StackError
from llmctl.local.supervisor import (
    ComponentRecord,
    ComponentSpec,
    Supervisor,
    pid_alive,
    port_in_use,
    probe_record,
    process_stopped,
)
from llmctl.state import StackState

WATCHDOG = "watchdog"
TRITON = "triton"  # llmctl.targets.local.TRITON: the component whose models it reloads
TICK_S = 1.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
#: A probe that gets no answer within PROBE_TIMEOUT_S this many times in a row means hung (a busy
#: server on two shared cores can miss one; three in a row is ~15 s without an answer).
HUNG_PROBES = 3
PROBE_TIMEOUT_S = 5.0
#: How long the watchdog may run without its own record before it takes itself for an orphan.
ORPHAN_GRACE_S = 5.0

LogFn = Callable[[str], None]


def heartbeat_path(state_dir: Path) -> Path:
    return StackState.at(state_dir).components_dir / f"{WATCHDOG}.heartbeat"


def watchdog_spec(state_dir: Path, log_file: Path, python: str = sys.executable) -> ComponentSpec:
    """The watchdog as a component of the stack (started last, so ``stop_all`` stops it first)."""
    return ComponentSpec(
        name=WATCHDOG,
        argv=(python, "-m", "llmctl.local.watchdog", "--state-dir", str(state_dir)),
        env=dict(os.environ),
        health_url="",
        log_file=log_file,
        heartbeat_file=heartbeat_path(state_dir),
        stop_timeout_s=5.0,
        startup_timeout_s=60.0,
    )


def backoff_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row: 1, 2, 4 ... at most 30."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))


def exit_reason(pid: int) -> str:
    """How a gone process ended: its status when it was our child (restarted by us), else unknown
    (the ``llmctl up`` that started it was its parent)."""
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        return f"process {pid} is gone (exit status unknown)"
    if got == 0:
        return f"process {pid} is gone"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"process {pid} was killed by signal {sig} ({name})"
    return f"process {pid} exited with status {os.waitstatus_to_exitcode(status)}"


@dataclass
class _Attempts:
    """What the watchdog remembers about one component between ticks."""

    failures: int = 0  # failed restarts in a row
    next_at: float = 0.0  # clock() before which no attempt is made
    hung_probes: int = 0  # probes in a row that timed out
    reason: str = ""  # why the last attempt failed (the process it started is gone by now)
    refused: bool = False  # not restartable (secrets withheld); said once


@dataclass(frozen=True)
class Attempt:
    """One restart attempt, as ``Watchdog.history`` keeps it (for people and tests)."""

    name: str
    at: float  # clock()
    ok: bool
    reason: str
    next_delay_s: float  # 0 after a success


class Watchdog:
    """Watches the components of one stack; ``tick`` is one look, ``run`` the loop."""

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: LogFn | None = None,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        hung_probes: int = HUNG_PROBES,
    ) -> None:
        self.state = StackState.at(state_dir)
        self.supervisor = Supervisor(state_dir)
        self.clock = clock
        self.log = log or _print_log
        self.probe_timeout_s = probe_timeout_s
        self.hung_probes = hung_probes
        self.history: list[Attempt] = []
        self._attempts: dict[str, _Attempts] = {}
        self._in_critical = False
        self._term_pending = False

    # -- one look --------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Beat, and restart what needs it if the stack is not being changed; the names tried."""
        self.beat()
        with self._try_lock() as mine:
            if not mine:
                return []
            tried = []
            for rec in self.supervisor.records():
                if rec.name == WATCHDOG:
                    continue
                att = self._attempts.setdefault(rec.name, _Attempts())
                reason = self._why_restart(rec, att)
                if not reason or att.refused or self.clock() < att.next_at:
                    continue
                tried.append(rec.name)
                self._while_beating(functools.partial(self._restart, rec, att, reason))
            return tried

    def beat(self) -> None:
        """Rewrite the heartbeat file: what tells ``status`` that the watchdog is alive."""
        path = heartbeat_path(self.state.dir)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{os.getpid()} {time.time():.3f}\n")

    @contextlib.contextmanager
    def _try_lock(self) -> Iterator[bool]:
        """The stack's lock, non-blocking: False while ``up`` or ``down`` holds it."""
        try:
            fh = open(self.state.lock_file, "a")  # noqa: SIM115 - closed below
        except OSError:
            yield False
            return
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True

    def _why_restart(self, rec: ComponentRecord, att: _Attempts) -> str:
        if not pid_alive(rec.pid, rec.start_ticks):
            att.hung_probes = 0
            return att.reason or exit_reason(rec.pid)
        if process_stopped(rec.pid):
            return f"hung: process {rec.pid} is stopped (state T)"
        state, detail = probe_record(rec, self.probe_timeout_s)
        if state != "hung":
            att.hung_probes = 0
            return ""
        att.hung_probes += 1
        if att.hung_probes < self.hung_probes:
            return ""
        return f"hung: {detail} ({att.hung_probes} probes in a row)"

    # -- one restart -----------------------------------------------------------------------------
    def _restart(self, rec: ComponentRecord, att: _Attempts, reason: str) -> None:
        if rec.env_withheld:
            att.refused = True
            self.log(
                f"{rec.name} is {reason}, but it is not restarted: its environment set "
                f"{', '.join(rec.env_withheld)}, which is not stored; run `llmctl up`"
            )
            return
        self.log(f"restarting {rec.name} (pid {rec.pid}): {reason}")
        self.supervisor.kill_group(rec)
        _wait_ports_free(rec.ports.values(), 10.0)
        rec.restarts += 1
        rec.last_restart_at = time.time()
        rec.last_exit = reason
        rec.first_started_at = rec.first_started_at or rec.started_at
        self.supervisor.update(rec)  # counted even if the start below fails
        new: ComponentRecord | None = None
        try:
            with self._critical():  # a SIGTERM here would orphan a process with no record
                new = self.supervisor.start(rec.spec())
                for name in ("restarts", "last_restart_at", "last_exit", "first_started_at"):
                    setattr(new, name, getattr(rec, name))
                self.supervisor.update(new)
            self._await_ready(new)
        except Exception as exc:  # any failure counts as a failed attempt and backs off
            if new is not None:
                self.supervisor.kill_group(new)
            att.failures += 1
            delay = backoff_delay(att.failures)
            att.next_at = self.clock() + delay
            att.reason = f"restart failed: {str(exc).splitlines()[0]}"
            self.history.append(Attempt(rec.name, self.clock(), False, att.reason, delay))
            self.log(f"{rec.name}: {att.reason}; next attempt in {delay:g} s")
            return
        self._attempts[rec.name] = _Attempts()
        self.history.append(Attempt(rec.name, self.clock(), True, reason, 0.0))
        self.log(f"{rec.name} is back (pid {new.pid}, restart {new.restarts})")

    def _await_ready(self, rec: ComponentRecord) -> None:
        deadline = time.monotonic() + rec.startup_timeout_s
        while True:
            if not pid_alive(rec.pid, rec.start_ticks):
                raise StackError(f"{exit_reason(rec.pid)} during start-up; see {rec.log_file}")
            state, detail = probe_record(rec, 1.0)
            if state == "healthy":
                break
            if time.monotonic() >= deadline:
                raise StackError(
                    f"not healthy within {rec.startup_timeout_s:g} s ({detail or state})"
                )
            time.sleep(0.2)
        if rec.name == TRITON:
            self._load_models(rec, deadline)

    def _load_models(self, rec: ComponentRecord, deadline: float) -> None:
        """Load again what the applied plan serves (Triton runs with explicit model control)."""
        try:
            models = list(json.loads(self.state.stack_file.read_text()).get("models", {}))
        except (OSError, ValueError):
            models = []
        if not models:
            return
        from llmctl.triton_client import ModelControl

        address = f"127.0.0.1:{rec.ports['grpc']}"
        self.log(f"loading {', '.join(models)} into {rec.name}")

        def load(model: str) -> None:
            with ModelControl(address) as control:  # one client per thread
                control.load(model, max(1.0, deadline - time.monotonic()))
                if not control.model_ready(model):
                    raise StackError(f"model {model} is not ready after loading")

        with ThreadPoolExecutor(max_workers=len(models)) as pool:
            for future in [pool.submit(load, m) for m in models]:
                future.result()

    def _while_beating(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (a restart: up to the start-up budget) while the heartbeat goes on."""
        failure: list[BaseException] = []

        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # re-raised in the caller's thread
                failure.append(exc)

        worker = threading.Thread(target=body, name="restart", daemon=True)
        worker.start()
        while worker.is_alive():
            self.beat()
            worker.join(0.5)
        if failure:
            raise failure[0]

    @contextlib.contextmanager
    def _critical(self) -> Iterator[None]:
        self._in_critical = True
        try:
            yield
        finally:
            self._in_critical = False
            if self._term_pending:
                self._exit()

    # -- the loop --------------------------------------------------------------------------------
    def run(self, interval_s: float = TICK_S) -> int:
        """Tick until SIGTERM, or until the stack no longer records this process (torn down)."""
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        started = time.monotonic()
        self.log(f"watching {self.state.dir} (pid {os.getpid()})")
        while True:
            if self._orphaned(started):
                self.log("this stack no longer records this watchdog; exiting")
                return 0
            try:
                self.tick()
            except Exception as exc:  # one bad look must not end the watching
                self.log(f"tick failed: {type(exc).__name__}: {exc}")
            time.sleep(interval_s)

    def _orphaned(self, started: float) -> bool:
        rec = self.supervisor.record(WATCHDOG)
        if rec is not None and rec.pid == os.getpid():
            return False
        return time.monotonic() - started > ORPHAN_GRACE_S

    def _on_term(self, signum: int, _frame: Any) -> None:
        if self._in_critical:
            self._term_pending = True
        else:
            self._exit()

    def _exit(self) -> None:
        self.log("stopping")
        os._exit(0)  # the kernel drops the lock; a restart in flight is left to `down`


def _wait_ports_free(ports: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(port_in_use(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.2)


def _print_log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmctl.local.watchdog",
        description="Restart the dead or hung components of one local stack.",
    )
    parser.add_argument("--state-dir", required=True, type=Path, help="the stack's state folder")
    parser.add_argument("--interval", type=float, default=TICK_S, help="seconds between looks")
    args = parser.parse_args(argv)
    return Watchdog(args.state_dir).run(args.interval)


if __name__ == "__main__":
    sys.exit(main())
