"""A small supervisor for the local target's background processes.

The local stack is a few long-lived processes (Triton today, the gateway next) that must outlive
the ``llmctl up`` that started them and be found again by ``status`` and ``down`` from another
shell. Each one is described by a :class:`ComponentSpec` (name, argv, env, health URL, log file);
nothing here knows what Triton is. The supervisor records what it started in the stack's state
directory (one JSON file per component: pid, process-group id, the process's kernel start time,
ports, log), so a reused pid is never mistaken for our process and ``down`` kills exactly the
process groups it created.

A record also holds what restarting the component needs (``llmctl.local.watchdog`` does that with
the same argv and ports): the working directory and only the part of the environment that differs
from the environment of the ``llmctl`` that started it. The watchdog inherits that environment, so
nothing the user's shell holds (tokens, keys) is written to disk; a differing variable whose name
looks secret is not written either (its name is listed in ``env_withheld`` and the watchdog will not
restart that component).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmctl.errors import StackError
from llmctl.state import StackState

ProgressFn = Callable[[str], None]
START_MARKER = "=== llmctl: starting "
#: A heartbeat file older than this means its writer is hung.
HEARTBEAT_MAX_AGE_S = 10.0
#: Words of an environment variable's name (split at "_") that mark it as a credential.
_SECRET_WORDS = frozenset(
    {"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "KEY", "APIKEY", "PAT"}
)


@dataclass(frozen=True)
class ComponentSpec:
    """What to run and how to tell that it is healthy."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    health_url: str  # 200 means healthy ("" when ``heartbeat_file`` tells health instead)
    log_file: Path
    ports: Mapping[str, int] = field(default_factory=dict)
    cwd: Path | None = None
    stop_timeout_s: float = 10.0
    # Identity for "has this component changed?"; env is excluded on purpose (it carries the
    # caller's whole environment), so pass what matters in ``labels``.
    labels: Mapping[str, str] = field(default_factory=dict)
    # For a component that serves nothing: healthy while it rewrites this file (mtime) at least
    # every HEARTBEAT_MAX_AGE_S seconds.
    heartbeat_file: Path | None = None
    # How long a restart (by the watchdog) may take to become healthy.
    startup_timeout_s: float = 180.0

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "argv": list(self.argv), "labels": dict(self.labels)}


@dataclass
class ComponentRecord:
    """What the state directory remembers about a started component."""

    name: str
    pid: int
    pgid: int
    start_ticks: int  # /proc/<pid>/stat field 22: tells a reused pid from ours
    started_at: float
    argv: list[str]
    health_url: str
    log_file: str
    ports: dict[str, int]
    labels: dict[str, str]
    # Added later, with defaults, so records written by older versions still load.
    env: dict[str, str] = field(default_factory=dict)  # only what differs from the starter's
    env_unset: list[str] = field(default_factory=list)  # variables the spec removed
    env_withheld: list[str] = field(default_factory=list)  # differing secrets, not written
    cwd: str | None = None
    heartbeat_file: str = ""
    startup_timeout_s: float = 180.0
    first_started_at: float = 0.0  # kept across restarts: the order ``stop_all`` reverses
    restarts: int = 0  # how often the watchdog started it again
    last_restart_at: float | None = None
    last_exit: str = ""  # why it was last restarted (exit status, signal, hung)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ComponentRecord:
        """Load a record, ignoring fields a newer version may have added."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def spec(self, base_env: Mapping[str, str] | None = None) -> ComponentSpec:
        """The spec to start this component again: same argv, ports, cwd, log and health.

        The environment is ``base_env`` (default: this process's, inherited from the ``llmctl up``
        that started the stack) plus what the record says differs from it.
        """
        env = {**(os.environ if base_env is None else base_env), **self.env}
        for name in self.env_unset:
            env.pop(name, None)
        return ComponentSpec(
            name=self.name,
            argv=tuple(self.argv),
            env=env,
            health_url=self.health_url,
            log_file=Path(self.log_file),
            ports=dict(self.ports),
            cwd=Path(self.cwd) if self.cwd else None,
            labels=dict(self.labels),
            heartbeat_file=Path(self.heartbeat_file) if self.heartbeat_file else None,
            startup_timeout_s=self.startup_timeout_s,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    # "healthy" | "unhealthy" | "hung" | "dead" | "stopped" | "missing" (expected, no record)
    state: str
    pid: int | None
    uptime_s: float | None
    ports: Mapping[str, int]
    log_file: str | None
    detail: str = ""
    restarts: int = 0
    last_exit: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "healthy"


def free_port() -> int:
    """A port free on the loopback interface right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a live pid, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may itself hold spaces or parentheses
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[19])


def reuse_port(fixed: int, previous: int | None) -> int:
    """``fixed`` if set, else ``previous`` while it is free, else a new free port.

    Restarting a component on its previous ports keeps the URLs other components were configured
    with, so they need no restart."""
    if fixed:
        return fixed
    if previous and not port_in_use(previous):
        return previous
    return free_port()


def env_delta(env: Mapping[str, str], base: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """(what ``env`` sets differently from ``base``, the names ``env`` removes from ``base``)."""
    changed = {k: v for k, v in env.items() if base.get(k) != v}
    return changed, sorted(k for k in base if k not in env)


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name suggests a credential (never written to disk)."""
    return any(word in _SECRET_WORDS for word in re.split(r"[_\W]+", name.upper()))


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start_ticks is None or stat[1] == start_ticks


def process_stopped(pid: int) -> bool:
    """True if the process is stopped (state T: SIGSTOP), which no health probe can tell."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] == "T"


def _reap(pid: int) -> None:
    """Collect the exit status when the component is our own child (tests, one-shot CLI runs)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _dead(rec: ComponentRecord) -> ComponentHealth:
    """The health of a component whose process is gone (reaped, so no zombie is left)."""
    _reap(rec.pid)
    return ComponentHealth(
        rec.name,
        "dead",
        rec.pid,
        None,
        rec.ports,
        rec.log_file,
        f"process {rec.pid} is gone; see {rec.log_file}",
        rec.restarts,
        rec.last_exit,
    )


def heartbeat_state(path: Path | str, since: float) -> tuple[str, str]:
    """("healthy"|"hung"|"down", detail) of a heartbeat file that must be newer than ``since``."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        return "down", f"no heartbeat yet ({path})"
    if mtime < since - 1.0:
        return "down", "no heartbeat since it started"
    age = time.time() - mtime
    if age > HEARTBEAT_MAX_AGE_S:
        return "hung", f"no heartbeat for {age:.0f} s"
    return "healthy", ""


def probe_record(rec: ComponentRecord, timeout_s: float = 2.0) -> tuple[str, str]:
    """Probe a started component by its heartbeat file, else by its health URL."""
    if rec.heartbeat_file:
        return heartbeat_state(rec.heartbeat_file, rec.started_at)
    return probe(rec.health_url, timeout_s)


def probe(url: str, timeout_s: float = 2.0) -> tuple[str, str]:
    """("healthy"|"unhealthy"|"hung"|"down", detail) for one GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback URL
            return ("healthy", "") if resp.status == 200 else ("unhealthy", f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        return "unhealthy", f"HTTP {exc.code}"
    except TimeoutError:
        return "hung", f"no answer from {url} within {timeout_s:g} s"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return "hung", f"no answer from {url} within {timeout_s:g} s"
        return "down", str(exc.reason)
    except OSError as exc:
        return "down", str(exc)


def log_tail(path: Path | str, lines: int = 12, keywords: Sequence[str] = ()) -> str:
    """The lines of a log that explain a failure, from the latest start only.

    Lines matching ``keywords`` (the first ones: a root cause precedes its consequences), else
    the end of the log.
    """
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    starts = [i for i, ln in enumerate(text) if ln.startswith(START_MARKER)]
    run = text[starts[-1] + 1 :] if starts else text
    keys = [k.lower() for k in keywords]
    picked = [ln for ln in run if any(k in ln.lower() for k in keys)] if keys else []
    chosen = picked[:lines] if picked else run[-lines:]
    return "\n".join("    " + ln[:300] for ln in chosen)


class Supervisor:
    """Start, find, probe and stop the components of one stack (one state directory)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.components_dir = StackState.at(state_dir).components_dir

    # -- records -------------------------------------------------------------------------------
    def _record_path(self, name: str) -> Path:
        return self.components_dir / f"{name}.json"

    def record(self, name: str) -> ComponentRecord | None:
        path = self._record_path(name)
        try:
            return ComponentRecord.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def records(self) -> list[ComponentRecord]:
        if not self.components_dir.is_dir():
            return []
        found = []
        for path in sorted(self.components_dir.glob("*.json")):
            rec = self.record(path.stem)
            if rec is not None:
                found.append(rec)
        return found

    def update(self, rec: ComponentRecord) -> None:
        """Write ``rec`` back (atomically), e.g. with its restart count changed."""
        self._write_record(rec)

    def _write_record(self, rec: ComponentRecord) -> None:
        self.components_dir.mkdir(parents=True, exist_ok=True)
        path = self._record_path(rec.name)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rec.to_json(), indent=2))
        os.replace(tmp, path)

    def is_running(self, name: str) -> bool:
        rec = self.record(name)
        return rec is not None and pid_alive(rec.pid, rec.start_ticks)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, spec: ComponentSpec) -> ComponentRecord:
        """Start ``spec`` in its own session (it outlives the CLI) with output to its log file."""
        busy = [f"{k} {p}" for k, p in spec.ports.items() if port_in_use(p)]
        if busy:
            raise StackError(
                f"{spec.name}: port {', '.join(busy)} on 127.0.0.1 is already in use; "
                "stop whatever holds it or choose another port"
            )
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_file, "ab") as log:
            log.write(f"\n{START_MARKER}{spec.name}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    list(spec.argv),
                    env=dict(spec.env),
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                raise StackError(f"{spec.name}: cannot start {spec.argv[0]}: {exc}") from exc
        stat = _proc_stat(proc.pid)
        env, unset = env_delta(spec.env, os.environ)
        withheld = sorted(k for k in env if looks_secret(k))
        now = time.time()
        rec = ComponentRecord(
            name=spec.name,
            pid=proc.pid,
            pgid=proc.pid,
            start_ticks=stat[1] if stat else 0,
            started_at=now,
            argv=list(spec.argv),
            health_url=spec.health_url,
            log_file=str(spec.log_file),
            ports=dict(spec.ports),
            labels=dict(spec.labels),
            env={k: v for k, v in env.items() if k not in withheld},
            env_unset=unset,
            env_withheld=withheld,
            # a restart from another process must run where this one did
            cwd=str(spec.cwd) if spec.cwd is not None else os.getcwd(),
            heartbeat_file=str(spec.heartbeat_file) if spec.heartbeat_file else "",
            startup_timeout_s=spec.startup_timeout_s,
            first_started_at=now,
        )
        self._write_record(rec)
        return rec

    def wait_healthy(
        self,
        name: str,
        timeout_s: float,
        on_progress: ProgressFn | None = None,
        log_keywords: Sequence[str] = ("error", "failed", "unable", "unrecognized", "invalid"),
        budget_s: float | None = None,
    ) -> None:
        """Poll the health URL until 200; fail fast (with the log's story) if the process dies.

        ``budget_s`` is the limit to name in the error when ``timeout_s`` is what is left of it.
        """
        rec = self.record(name)
        if rec is None:
            raise StackError(f"{name}: not started")
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            if not pid_alive(rec.pid, rec.start_ticks):
                _reap(rec.pid)
                self._forget(name)
                raise StackError(
                    f"{name} exited during start-up; see {rec.log_file}:\n"
                    + log_tail(rec.log_file, keywords=log_keywords)
                )
            state, detail = probe_record(rec, timeout_s=1.0)
            if state == "healthy":
                return
            if detail and detail != last and on_progress:
                on_progress(f"waiting for {name} ({detail})")
                last = detail
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{name} not ready within {budget_s or timeout_s:g} s ({detail or state}); see "
                    f"{rec.log_file}:\n" + log_tail(rec.log_file, keywords=log_keywords)
                )
            time.sleep(0.2)

    def health(self, name: str, timeout_s: float = 2.0) -> ComponentHealth:
        rec = self.record(name)
        if rec is None:
            return ComponentHealth(name, "stopped", None, None, {}, None)
        return self._health(rec, timeout_s)

    def _health(self, rec: ComponentRecord, timeout_s: float) -> ComponentHealth:
        if not pid_alive(rec.pid, rec.start_ticks):
            return _dead(rec)
        if process_stopped(rec.pid):
            state, detail = "hung", f"process {rec.pid} is stopped (SIGSTOP)"
        else:
            state, detail = probe_record(rec, timeout_s=timeout_s)
        if state == "down":
            if not pid_alive(rec.pid, rec.start_ticks):  # it died while we asked
                return _dead(rec)
            state = "unhealthy"
        return ComponentHealth(
            rec.name,
            state,
            rec.pid,
            time.time() - rec.started_at,
            rec.ports,
            rec.log_file,
            detail,
            rec.restarts,
            rec.last_exit,
        )

    def kill_group(self, rec: ComponentRecord, timeout_s: float = 10.0) -> bool:
        """SIGKILL the component's whole process group (a hung leader cannot be asked to stop)
        and keep its record; True once no member is left."""
        self._signal_group(rec, signal.SIGKILL)
        gone = self._wait_group_gone(rec, timeout_s)
        _reap(rec.pid)
        return gone

    def stop(self, name: str, timeout_s: float | None = None) -> bool:
        """SIGTERM the component's process group, then SIGKILL; forget it. True if it was running."""
        rec = self.record(name)
        if rec is None:
            return False
        was_running = pid_alive(rec.pid, rec.start_ticks)
        if was_running:
            timeout = 10.0 if timeout_s is None else timeout_s
            self._signal_group(rec, signal.SIGCONT)  # a stopped (hung) process cannot handle TERM
            self._signal_group(rec, signal.SIGTERM)
            if not self._wait_group_gone(rec, timeout):
                self._signal_group(rec, signal.SIGKILL)
                self._wait_group_gone(rec, 5.0)
        else:
            # the leader may be gone while children of its group live on
            self._signal_group(rec, signal.SIGKILL)
        _reap(rec.pid)
        self._forget(name)
        return was_running

    def stop_all(self, timeout_s: float | None = None) -> list[str]:
        stopped = []
        # reverse start order (dependants first: the watchdog, then the gateway, then Triton); a
        # restart keeps first_started_at, so restarting Triton does not move it ahead of the gateway
        order = sorted(self.records(), key=lambda r: r.first_started_at or r.started_at)
        for rec in reversed(order):
            if self.stop(rec.name, timeout_s):
                stopped.append(rec.name)
        return stopped

    # -- internals -----------------------------------------------------------------------------
    def _forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._record_path(name).unlink()

    def _group_members(self, rec: ComponentRecord) -> list[int]:
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except OSError:
                continue
            rest = raw[raw.rfind(")") + 2 :].split()
            if rest[0] not in ("Z", "X") and int(rest[2]) == rec.pgid:
                members.append(int(entry.name))
        return members

    def _signal_group(self, rec: ComponentRecord, sig: int) -> None:
        # Only signal a group we can prove is ours: its leader is our pid, or it has members left
        # after the leader exited (the leader's pid cannot be reused while its group lives).
        if not (pid_alive(rec.pid, rec.start_ticks) or self._group_members(rec)):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(rec.pgid, sig)

    def _wait_group_gone(self, rec: ComponentRecord, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            _reap(rec.pid)
            if not self._group_members(rec):
                return True
            time.sleep(0.1)
        return not self._group_members(rec)
