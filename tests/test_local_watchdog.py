"""The watchdog restarts what died or hung, on the same ports; ``up`` restarts only what it names.

Unit tests first (small python processes, a fake clock, no Triton): backoff, what a record keeps of
the environment, old records, stop order. Then two small LLM-only stacks, each shared by the tests
of one class: one with the watchdog (SIGKILL, SIGSTOP, the stack lock), one without it but with the
gateway (``up`` after a SIGKILL; a gateway that fails to start). Waits for recovery poll with a
generous deadline: a liveness bound, not a speed assertion.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from stack_fixtures import StackDirs, llm_only_spec, make_target
from typer.testing import CliRunner

from llmctl.errors import StackError
from llmctl.local.supervisor import (
    ComponentRecord,
    ComponentSpec,
    Supervisor,
    free_port,
    pid_alive,
    port_in_use,
)
from llmctl.local.watchdog import WATCHDOG, Watchdog, backoff_delay
from llmctl.targets.local import TRITON, LocalTarget

ROOT = Path(__file__).resolve().parents[1]
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"
RECOVERY_LIMIT_S = 300.0  # a Triton start and a model load on two busy cores, with room to spare


def _state(tmp_path: Path) -> Path:
    return tmp_path / "home" / "bp" / "local"


def _spec(state: Path, name: str, code: str, **kw: Any) -> ComponentSpec:
    return ComponentSpec(
        name=name,
        argv=(sys.executable, "-c", code),
        env=kw.pop("env", dict(os.environ)),
        health_url=f"http://127.0.0.1:{free_port()}/",  # nothing listens: never healthy
        log_file=state / "logs" / f"{name}.log",
        **kw,
    )


def _wait_gone(pid: int, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still alive"
        time.sleep(0.05)


# -- units -----------------------------------------------------------------------------------------
def test_backoff_delays() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_grows_when_a_restart_fails(tmp_path: Path) -> None:
    state = _state(tmp_path)
    sup = Supervisor(state)
    rec = sup.start(_spec(state, "crasher", "import sys; sys.exit(3)", startup_timeout_s=30))
    _wait_gone(rec.pid)
    now = [0.0]
    logs: list[str] = []
    wd = Watchdog(state, clock=lambda: now[0], log=logs.append)
    while now[0] <= 62.0:
        wd.tick()
        now[0] += 0.5
    assert [a.at for a in wd.history] == [0, 1, 3, 7, 15, 31, 61]
    assert [a.next_delay_s for a in wd.history] == [1, 2, 4, 8, 16, 30, 30]
    assert not any(a.ok for a in wd.history)
    after = sup.record("crasher")
    assert after is not None and after.restarts == 7 and after.last_restart_at
    assert after.argv == rec.argv and after.first_started_at == rec.first_started_at
    assert "exited with status 3" in after.last_exit
    assert sum("next attempt in" in line for line in logs) == 7
    assert (state / "components" / "watchdog.heartbeat").is_file()
    sup.stop_all()


def test_unanswered_probes_in_a_row_mean_hung(tmp_path: Path) -> None:
    """A process that accepts connections and never answers: restarted on the third timeout."""
    state = _state(tmp_path)
    port = free_port()
    code = (
        "import socket, time; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(8); time.sleep(60)"
    )
    spec = replace(
        _spec(state, "hanger", code, ports={"http": port}, startup_timeout_s=1.0),
        health_url=f"http://127.0.0.1:{port}/",
    )
    sup = Supervisor(state)
    rec = sup.start(spec)
    logs: list[str] = []
    wd = Watchdog(state, log=logs.append, probe_timeout_s=0.3, hung_probes=3)
    try:
        deadline = time.monotonic() + 30
        while not port_in_use(port):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert wd.tick() == [] and wd.tick() == []
        assert wd.tick() == ["hanger"]
        assert logs[0].startswith(f"restarting hanger (pid {rec.pid}): hung: no answer")
        assert "3 probes in a row" in logs[0]
        assert not pid_alive(rec.pid, rec.start_ticks)
        assert sup.record("hanger").restarts == 1
    finally:
        sup.stop_all(timeout_s=5)


def test_records_keep_only_what_differs_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMCTL_TEST_INHERITED", "from-the-shell")
    monkeypatch.setenv("LLMCTL_TEST_SHELL_TOKEN", "inherited-s3cr3t")
    env = {**os.environ, "LLMCTL_TEST_ADDED": "1", "MY_API_TOKEN": "added-s3cr3t"}
    del env["LLMCTL_TEST_INHERITED"]
    state = _state(tmp_path)
    sup = Supervisor(state)
    rec = sup.start(_spec(state, "sleeper", "import time; time.sleep(60)", env=env))
    try:
        text = (state / "components" / "sleeper.json").read_text()
        assert "s3cr3t" not in text and "from-the-shell" not in text
        assert rec.env == {"LLMCTL_TEST_ADDED": "1"}
        assert rec.env_unset == ["LLMCTL_TEST_INHERITED"]
        assert rec.env_withheld == ["MY_API_TOKEN"]
        assert rec.cwd == os.getcwd()
        again = rec.spec()  # what a restart runs: this environment plus the record's changes
        assert again.env["LLMCTL_TEST_ADDED"] == "1" and "LLMCTL_TEST_INHERITED" not in again.env
        assert again.argv == tuple(rec.argv) and again.cwd == Path(os.getcwd())

        os.kill(rec.pid, signal.SIGKILL)
        _wait_gone(rec.pid)
        logs: list[str] = []
        wd = Watchdog(state, log=logs.append)
        wd.tick()
        wd.tick()
        assert wd.history == [] and sup.record("sleeper").restarts == 0
        assert len(logs) == 1 and "not restarted" in logs[0] and "MY_API_TOKEN" in logs[0]
    finally:
        sup.stop_all()


def test_records_written_before_the_watchdog_still_load(tmp_path: Path) -> None:
    state = _state(tmp_path)
    old = {
        "name": "triton",
        "pid": 1,
        "pgid": 1,
        "start_ticks": 0,
        "started_at": 1.0,
        "argv": ["tritonserver"],
        "health_url": "http://127.0.0.1:1/v2/health/live",
        "log_file": "/tmp/triton.log",
        "ports": {"http": 1},
        "labels": {},
        "a_field_from_the_future": True,
    }
    (state / "components").mkdir(parents=True)
    (state / "components" / "triton.json").write_text(json.dumps(old))
    rec = Supervisor(state).record("triton")
    assert isinstance(rec, ComponentRecord) and rec.restarts == 0 and rec.last_exit == ""
    assert rec.env == {} and rec.cwd is None


def test_stop_all_stops_in_reverse_start_order(tmp_path: Path) -> None:
    """Not by name: started zeta, alpha, mid; stopped mid, alpha, zeta."""
    state = _state(tmp_path)
    sup = Supervisor(state)
    for name in ("zeta", "alpha", "mid"):
        sup.start(_spec(state, name, "import time; time.sleep(60)"))
        time.sleep(0.01)
    assert sup.stop_all(timeout_s=5) == ["mid", "alpha", "zeta"]


# -- a stack with the watchdog ---------------------------------------------------------------------
def _wait_recovered(target: LocalTarget, old_pid: int) -> tuple[ComponentRecord, Any]:
    """Poll until Triton runs under a new pid and the stack is running again."""
    deadline = time.monotonic() + RECOVERY_LIMIT_S
    while True:
        rec = target.supervisor.record(TRITON)
        if rec is not None and rec.pid != old_pid and pid_alive(rec.pid, rec.start_ticks):
            st = target.status()
            if st.state == "running":
                return rec, st
        if time.monotonic() > deadline:
            log = target.log_file(WATCHDOG).read_text(errors="replace")[-3000:]
            pytest.fail(f"not recovered within {RECOVERY_LIMIT_S:g} s; watchdog log:\n{log}")
        time.sleep(2.0)


def _component(st: Any, name: str) -> Any:
    return next(c for c in st.components if c.name == name)


@pytest.fixture(scope="class")
def watched(stack_dirs: StackDirs) -> Iterator[LocalTarget]:
    """A small stack with its watchdog; ``down`` at the end must leave nothing."""
    target = make_target(llm_only_spec("watched", startup_timeout_s=180.0), stack_dirs)
    try:
        result = target.apply(smoke=False)
        assert ("start", WATCHDOG) in {(a.verb, a.subject) for a in result.plan.actions}
        st = target.status()
        assert st.state == "running", st.problems
        assert [c.name for c in st.components] == [TRITON, WATCHDOG]
        yield target
    finally:
        records = target.supervisor.records()
        gone = target.destroy()
    assert gone.stopped[:1] == (WATCHDOG,)  # first: it must not restart what down stops
    assert target.supervisor.records() == []
    for rec in records:
        _wait_gone(rec.pid, 15)
        assert not any(port_in_use(p) for p in rec.ports.values())


@pytest.mark.stack
class TestWatchdog:
    def test_killed_triton_is_restarted_on_the_same_ports(self, watched: LocalTarget) -> None:
        old = watched.supervisor.record(TRITON)
        os.kill(old.pid, signal.SIGKILL)
        new, st = _wait_recovered(watched, old.pid)
        assert new.ports == old.ports and new.argv == old.argv
        triton = _component(st, TRITON)
        assert triton.restarts == 1 and "gone" in triton.last_exit  # the test was its parent
        assert {m.name: m.state for m in st.models} == {"tensorrt_llm": "READY"}
        assert st.to_dict()["components"][0]["restarts"] == 1
        assert any("restarts" in line for line in st.summary())
        assert "restarting triton" in watched.log_file(WATCHDOG).read_text()

    def test_stopped_triton_is_detected_as_hung_and_restarted(self, watched: LocalTarget) -> None:
        old = watched.supervisor.record(TRITON)
        os.kill(old.pid, signal.SIGSTOP)
        new, st = _wait_recovered(watched, old.pid)
        assert new.ports == old.ports
        assert not pid_alive(old.pid, old.start_ticks)  # killed, not left stopped
        triton = _component(st, TRITON)
        assert triton.restarts == old.restarts + 1 and triton.last_exit.startswith("hung")

    def test_watchdog_does_nothing_while_the_lock_is_held(self, watched: LocalTarget) -> None:
        old = watched.supervisor.record(TRITON)
        with open(watched.state.lock_file, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `up` and `down` hold it
            os.kill(old.pid, signal.SIGKILL)
            _wait_gone(old.pid)
            time.sleep(5.0)  # several ticks
            held = watched.supervisor.record(TRITON)
            assert (held.pid, held.restarts) == (old.pid, old.restarts)
            assert watched.supervisor.health(WATCHDOG).state == "healthy"  # alive, waiting
        deadline = time.monotonic() + 60
        while watched.supervisor.record(TRITON).pid == old.pid:  # released: it acts
            assert time.monotonic() < deadline, "no restart after the lock was released"
            time.sleep(0.2)
        # the class's teardown runs `down` while this restart is still starting up


# -- a stack without the watchdog, with the gateway -------------------------------------------------
def _gateway_factory() -> Any:
    from llmctl.blueprint import load_blueprint
    from llmctl.gateway.component import gateway_factory

    return gateway_factory(load_blueprint(HR))


def _failing(factory: Any) -> Any:
    """The real gateway, with a command line it refuses: it exits at once."""

    def make(target: Any, endpoints: Any, prepare: bool = True) -> Any:
        spec = factory(target, endpoints, prepare)
        return replace(spec, argv=(*spec.argv, "--no-such-flag"))

    return make


@pytest.fixture(scope="class")
def gated(stack_dirs: StackDirs) -> Iterator[LocalTarget]:
    """A small stack without the watchdog, with the real gateway."""
    spec = llm_only_spec("only-named", watchdog=False, startup_timeout_s=180.0)
    target = LocalTarget(
        spec, home=stack_dirs.home, cache=stack_dirs.cache, extra_components=(_gateway_factory(),)
    )
    try:
        target.apply(smoke=False)
        assert target.status().state == "running"
        yield target
    finally:
        target.destroy()
    assert target.supervisor.records() == []


@pytest.mark.stack
class TestUpWithoutWatchdog:
    def test_up_restarts_only_what_its_plan_names(self, gated: LocalTarget) -> None:
        triton = gated.supervisor.record(TRITON)
        gateway = gated.supervisor.record("gateway")
        os.kill(triton.pid, signal.SIGKILL)
        _wait_gone(triton.pid)
        plan = gated.plan()
        actions = {(a.verb, a.subject) for a in plan.actions}
        assert actions == {("restart", TRITON), ("load", "tensorrt_llm")}, plan.actions
        gated.apply(plan, smoke=False)
        again = gated.supervisor.record(TRITON)
        assert again.pid != triton.pid and again.ports == triton.ports
        assert gated.supervisor.record("gateway") == gateway  # the same process, untouched
        assert pid_alive(gateway.pid, gateway.start_ticks)
        assert gated.status().state == "running"

    def test_a_gateway_that_fails_to_start_is_missing(
        self, gated: LocalTarget, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # the same stack after a change that breaks the gateway: Triton keeps running
        broken = LocalTarget(
            gated.spec, home=gated.state.home, extra_components=(_failing(_gateway_factory()),)
        )
        broken.repository = gated.repository  # the same model cache
        with pytest.raises(StackError, match="gateway exited during start-up"):
            broken.apply(smoke=False)
        st = broken.status()
        assert st.state == "degraded" and not st.ok
        assert _component(st, "gateway").state == "missing"
        assert _component(st, TRITON).state == "healthy"
        assert any(p.startswith("gateway is missing") for p in st.problems)

        from llmctl.cli import app

        monkeypatch.setattr("llmctl.cli.stack._target", lambda *_: broken)
        result = CliRunner().invoke(app, ["status", str(HR), "--output", "json"])
        assert result.exit_code == 1, result.output
        doc = json.loads(result.output)
        assert doc["state"] == "degraded"
        assert {c["name"]: c["state"] for c in doc["components"]}["gateway"] == "missing"
