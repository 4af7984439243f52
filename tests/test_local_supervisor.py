"""The generic supervisor with small real processes (no Triton): start, health, timeout, stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from llmctl.errors import StackError
from llmctl.local.supervisor import ComponentSpec, Supervisor, free_port, pid_alive


def _http_server(tmp_path: Path, port: int) -> ComponentSpec:
    return ComponentSpec(
        name="web",
        argv=(sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"),
        env=dict(os.environ),
        health_url=f"http://127.0.0.1:{port}/",
        log_file=tmp_path / "logs" / "web.log",
        ports={"http": port},
        cwd=tmp_path,
    )


def test_start_health_stop(tmp_path):
    sup = Supervisor(tmp_path / "state")
    port = free_port()
    rec = sup.start(_http_server(tmp_path, port))
    try:
        assert os.getpgid(rec.pid) == rec.pid  # its own session and process group
        sup.wait_healthy("web", timeout_s=60)
        health = sup.health("web")
        assert health.state == "healthy" and health.pid == rec.pid
        assert Supervisor(tmp_path / "state").record("web") == rec  # found again from disk
    finally:
        assert sup.stop("web", timeout_s=10)
    assert not pid_alive(rec.pid)
    assert not _listening(port)
    assert sup.records() == [] and sup.health("web").state == "stopped"


def _listening(port: int) -> bool:
    """A socket in LISTEN state on ``port`` (not merely bound: after the server is gone, the
    kernel may hand the same number to some other test's outgoing connection)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return True
    return False


def test_dead_component_is_reported(tmp_path):
    sup = Supervisor(tmp_path / "state")
    rec = sup.start(_http_server(tmp_path, free_port()))
    sup.wait_healthy("web", timeout_s=60)
    os.kill(rec.pid, signal.SIGKILL)
    os.waitpid(rec.pid, 0)
    assert sup.health("web").state == "dead"
    sup.stop("web")
    assert sup.records() == []


def test_readiness_timeout_quotes_the_log(tmp_path):
    sup = Supervisor(tmp_path / "state")
    spec = ComponentSpec(
        name="sleeper",
        argv=(
            sys.executable,
            "-c",
            "print('error: still warming up', flush=True); import time; time.sleep(60)",
        ),
        env=dict(os.environ),
        health_url=f"http://127.0.0.1:{free_port()}/",
        log_file=tmp_path / "sleeper.log",
    )
    rec = sup.start(spec)
    try:
        with pytest.raises(StackError, match="not ready within") as info:
            sup.wait_healthy("sleeper", timeout_s=0.5)
        assert "still warming up" in str(info.value)
        assert str(spec.log_file) in str(info.value)
    finally:
        sup.stop("sleeper", timeout_s=5)
    assert not pid_alive(rec.pid)


def test_exit_during_startup_is_reported_with_the_log(tmp_path):
    sup = Supervisor(tmp_path / "state")
    spec = ComponentSpec(
        name="crasher",
        argv=(sys.executable, "-c", "import sys; print('fatal: bad flag'); sys.exit(3)"),
        env=dict(os.environ),
        health_url=f"http://127.0.0.1:{free_port()}/",
        log_file=tmp_path / "crasher.log",
    )
    sup.start(spec)
    with pytest.raises(StackError, match="crasher exited during start-up") as info:
        sup.wait_healthy("crasher", timeout_s=30)
    assert "fatal: bad flag" in str(info.value)
    assert sup.records() == []


def test_port_in_use_is_refused_before_starting(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(StackError, match=f"port http {port} on 127.0.0.1 is already in use"):
            Supervisor(tmp_path / "state").start(_http_server(tmp_path, port))
    assert Supervisor(tmp_path / "state").records() == []
