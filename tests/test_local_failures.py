"""Each way ``up`` can fail raises StackError with the log's story and leaves nothing running.

Also: ``down`` leaves no process, port or state; a dead Triton is reported and restarted by ``up``.
Every test here runs its own small LLM-only stack so the shared session stack is never disturbed.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
from stack_fixtures import llm_only_spec, make_target

from llmctl.errors import StackError
from llmctl.local.supervisor import pid_alive, port_in_use
from llmctl.targets.local import TRITON

pytestmark = pytest.mark.stack


def _assert_nothing_left(target, pids=(), ports=()) -> None:
    assert target.supervisor.records() == []
    assert not target.stack_file.exists()
    assert not target.models_dir.exists()
    for pid in pids:
        assert not pid_alive(pid)
    for port in ports:
        assert not port_in_use(port)


def test_port_in_use(stack_dirs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        target = make_target(llm_only_spec("fail-port", http_port=port), stack_dirs)
        with pytest.raises(StackError, match=f"port .*{port}.* in use"):
            target.apply()
        _assert_nothing_left(target)


def test_model_file_missing(stack_dirs, tmp_path):
    spec = llm_only_spec("fail-missing")
    spec = spec.with_changes(llm=spec.llm.__class__(gguf=tmp_path / "nope.gguf"))
    target = make_target(spec, stack_dirs)
    with pytest.raises(StackError, match="GGUF model file not found: .*nope.gguf"):
        target.apply()
    _assert_nothing_left(target)


def test_triton_crashes_at_start(stack_dirs):
    target = make_target(llm_only_spec("fail-crash", triton_args=("--no-such-flag",)), stack_dirs)
    with pytest.raises(StackError) as info:
        target.apply()
    message = str(info.value)
    assert message.startswith("triton exited during start-up")
    assert str(target.log_file(TRITON)) in message
    assert "no-such-flag" in message  # the relevant log line is quoted
    _assert_nothing_left(target)


def test_model_fails_to_load(stack_dirs, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a GGUF file" * 100)
    spec = llm_only_spec("fail-load")
    spec = spec.with_changes(llm=spec.llm.__class__(gguf=junk, context_tokens=512, threads=1))
    target = make_target(spec, stack_dirs)
    with pytest.raises(StackError) as info:
        target.apply()
    message = str(info.value)
    assert message.startswith("model tensorrt_llm failed to load")
    assert str(target.log_file(TRITON)) in message
    _assert_nothing_left(target)


def test_readiness_timeout(stack_dirs):
    target = make_target(llm_only_spec("fail-timeout", startup_timeout_s=0.05), stack_dirs)
    with pytest.raises(StackError, match="not ready within"):
        target.apply()
    _assert_nothing_left(target)


def test_dead_triton_is_reported_restarted_and_down_leaves_nothing(stack_dirs):
    # no watchdog: it would restart the killed Triton before ``up`` gets to (test_local_watchdog)
    target = make_target(llm_only_spec("lifecycle", watchdog=False), stack_dirs)
    try:
        first = target.apply(smoke=False)
        rec = target.supervisor.record(TRITON)
        assert first.changed and pid_alive(rec.pid)

        os.kill(rec.pid, signal.SIGKILL)
        while pid_alive(rec.pid):  # the kernel delivers SIGKILL asynchronously
            time.sleep(0.05)
        st = target.status()
        assert st.state == "degraded" and st.components[0].state == "dead"
        plan = target.plan()
        assert ("restart", TRITON) in {(a.verb, a.subject) for a in plan.actions}

        target.apply(plan)
        rec2 = target.supervisor.record(TRITON)
        assert rec2.pid != rec.pid and target.status().state == "running"
    finally:
        rec2 = target.supervisor.record(TRITON)
        stopped = target.destroy()
    assert stopped.stopped == (TRITON,)
    _assert_nothing_left(target, pids=[rec2.pid], ports=rec2.ports.values())
    assert target.status().state == "stopped"
    assert target.destroy().stopped == ()  # idempotent
