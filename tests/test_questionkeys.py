"""The audit trail's question key ring (llmctl/gateway/questionkeys.py) and ``llmctl audit``.

The ring: created once 0600, rotation keeps old keys, a running gateway follows a rotation
without a restart, HMACs differ by key. The gateway: records carry ``question_hmac`` and
``question_key_id`` and no key byte reaches the audit file or the config. The CLI: ``rotate-key``
and ``find`` against a temporary ``LLMCTL_HOME`` with a hand-written audit trail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_support import EchoLLM, ServerThread, make_config, token
from typer.testing import CliRunner

from llmctl.cli import app
from llmctl.gateway.app import create_app
from llmctl.gateway.config import load_config, write_config
from llmctl.gateway.questionkeys import (
    KEY_BYTES,
    QuestionKeyError,
    RingSource,
    ensure_question_keys,
    load_ring,
    match_records,
    question_fields,
    question_keys_path,
    rotate_question_key,
)
from llmctl.state import StackState

ROOT = Path(__file__).resolve().parent.parent
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"
runner = CliRunner()


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _key_forms(path: Path) -> list[str]:
    """Every key of the ring as hex and as base64 (either would be a leak)."""
    forms = []
    for k in load_ring(path).keys:
        forms += [k.secret.hex(), base64.b64encode(k.secret).decode()]
        forms += [base64.urlsafe_b64encode(k.secret).decode().rstrip("=")]
    return forms


# -- the ring ------------------------------------------------------------------------------------
def test_ring_is_created_once_0600(tmp_path: Path) -> None:
    state = tmp_path / "bp" / "local"
    path = ensure_question_keys(state)
    assert path == StackState.at(state).auth_dir / "question-keys.json" == question_keys_path(state)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    ring = load_ring(path)
    assert len(ring.keys) == 1 and ring.active_id == ring.keys[0].key_id
    assert len(ring.active.secret) == KEY_BYTES and ring.active.created.endswith("Z")
    assert ensure_question_keys(state) == path
    assert load_ring(path) == ring  # a second `up` keeps the key: old records stay matchable
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_rotation_adds_an_active_key_and_keeps_the_old(tmp_path: Path) -> None:
    path = ensure_question_keys(tmp_path / "bp" / "local")
    before = load_ring(path)
    new = rotate_question_key(path)
    newer = rotate_question_key(path)
    after = load_ring(path)
    assert [k.key_id for k in after.keys] == [before.active_id, new.key_id, newer.key_id]
    assert after.active_id == newer.key_id and after.keys[0] == before.active
    assert len({k.secret for k in after.keys}) == 3
    assert _mode(path) == 0o600
    assert [d["active"] for d in after.describe()] == [False, False, True]
    assert "secret" not in repr(after) and after.active.secret.hex() not in repr(after)


def test_hmac_is_keyed_and_differs_by_key(tmp_path: Path) -> None:
    path = ensure_question_keys(tmp_path / "bp" / "local")
    rotate_question_key(path)
    old, new = load_ring(path).keys
    q = "How many weeks of parental leave?"
    assert old.digest(q) == hmac.new(old.secret, q.encode("utf-8"), hashlib.sha256).hexdigest()
    assert old.digest(q) != new.digest(q)
    assert hashlib.sha256(q.encode()).hexdigest() not in (old.digest(q), new.digest(q))
    assert old.digest(q) != old.digest(q + " ")
    assert load_ring(path).digest(q) == (new.digest(q), new.key_id)


def test_gateway_follows_a_rotation_without_restart(tmp_path: Path) -> None:
    path = ensure_question_keys(tmp_path / "bp" / "local")
    first = load_ring(path).active_id
    live = RingSource(path, check_every_s=0)
    lazy = RingSource(path, check_every_s=3600)
    assert live.ring().active_id == lazy.ring().active_id == first
    second = rotate_question_key(path).key_id
    assert live.ring().active_id == second
    assert lazy.ring().active_id == first  # checked at most every check_every_s, not per request
    assert live.ring().get(first) is not None


def test_a_broken_ring_keeps_the_last_good_one_and_logs_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = ensure_question_keys(tmp_path / "bp" / "local")
    secret = load_ring(path).active.secret.hex()
    live = RingSource(path, check_every_s=0)
    good = live.ring().active_id
    path.write_text(path.read_text()[:-20])  # truncated: the parser would quote what it read
    with caplog.at_level(logging.WARNING, logger="llmctl.gateway"):
        assert live.ring().active_id == good
        path.unlink()
        assert live.ring().active_id == good
    assert "not a question key ring" in caplog.text and secret not in caplog.text


def test_ring_errors_say_what_to_do_and_never_quote_the_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionKeyError, match="llmctl up"):
        load_ring(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "active": "a", "keys": [{"id": "a", "key": "00ff-SECRET"}]}')
    with pytest.raises(QuestionKeyError) as err:
        load_ring(bad)
    assert "SECRET" not in str(err.value) and "00ff" not in str(err.value)
    with pytest.raises(QuestionKeyError, match="llmctl up"):
        rotate_question_key(tmp_path / "nowhere" / "question-keys.json")


def test_no_key_path_uses_an_ephemeral_key_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llmctl.gateway"):
        source = RingSource(None)
    assert "ephemeral" in caplog.text and source.ring().ephemeral
    fields = question_fields(None, "q")
    assert fields["question_key_id"].startswith("ephemeral-") and len(fields["question_hmac"]) == 64
    assert question_fields(None, None) == {}


def test_match_records(tmp_path: Path) -> None:
    path = ensure_question_keys(tmp_path / "bp" / "local")
    rotate_question_key(path)
    ring = load_ring(path)
    old, new = ring.keys
    q = "Can I carry over annual leave?"
    records = [
        {"request_id": "r1", "question_hmac": old.digest(q), "question_key_id": old.key_id},
        {"request_id": "r2", "question_hmac": new.digest(q), "question_key_id": new.key_id},
        {"request_id": "r3", "question_hmac": new.digest("other"), "question_key_id": new.key_id},
        {"request_id": "r4", "question_hmac": old.digest(q), "question_key_id": new.key_id},
        {"request_id": "r5", "question_hmac": new.digest(q), "question_key_id": "gone"},
        {"request_id": "r6", "question_sha256": hashlib.sha256(q.encode()).hexdigest()},
    ]
    assert [m["request_id"] for m in match_records(ring, q, records)] == ["r1", "r2", "r5"]


# -- the gateway ---------------------------------------------------------------------------------
class NoHits:
    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[Any]:
        return []

    def ready(self) -> tuple[bool, str]:
        return True, ""


def test_records_carry_the_hmac_and_no_key_reaches_audit_or_config(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = make_config(state)
    ring_path = Path(config.audit.question_key_path or "")
    config_file = write_config(config, state / "gateway" / "config.json")
    question = "Who won the 1954 football world cup final?"
    with ServerThread(create_app(load_config(config_file), retriever=NoHits(), llm=EchoLLM())) as s:
        bearer = {"Authorization": f"Bearer {token(state, 'alice', ('hr',))}"}
        r = httpx.post(f"{s.url}/v1/ask", json={"question": question}, headers=bearer, timeout=30)
        assert r.status_code == 200
    audit_text = (state / "audit" / "audit.jsonl").read_text()
    (rec,) = [json.loads(line) for line in audit_text.splitlines()]
    ring = load_ring(ring_path)
    assert rec["question_key_id"] == ring.active_id
    assert rec["question_hmac"] == ring.active.digest(question)
    assert "question_sha256" not in rec and "question" not in rec
    for form in _key_forms(ring_path):
        assert form not in audit_text and form not in config_file.read_text()


def test_a_configured_ring_that_is_missing_fails_the_start(tmp_path: Path) -> None:
    from dataclasses import replace

    config = make_config(tmp_path / "state")
    missing = replace(config.audit, question_key_path=str(tmp_path / "no" / "ring.json"))
    with pytest.raises(QuestionKeyError, match="llmctl up"):
        create_app(replace(config, audit=missing), retriever=NoHits(), llm=EchoLLM())


def test_config_resolves_the_ring_path_relative_to_the_file(tmp_path: Path) -> None:
    from dataclasses import replace

    config = make_config(tmp_path / "state")
    rel = replace(config, audit=replace(config.audit, question_key_path="../auth/keys.json"))
    path = write_config(rel, tmp_path / "state" / "gateway" / "config.json")
    assert load_config(path).audit.question_key_path == str(tmp_path / "state" / "auth/keys.json")


def test_up_makes_the_ring_and_plan_names_it_without_making_it(tmp_path: Path) -> None:
    from llmctl.blueprint import load_blueprint
    from llmctl.gateway.component import gateway_component

    bp = load_blueprint(HR)
    args = {"triton_url": "http://127.0.0.1:1", "triton_grpc_url": "127.0.0.1:2", "port": 9}
    state = tmp_path / "hr-policy-assistant" / "local"
    plan = gateway_component(state, bp, index_dir=None, prepare=False, **args)
    assert not question_keys_path(state).exists()
    up = gateway_component(state, bp, index_dir=None, **args)
    ring = question_keys_path(state)
    assert _mode(ring) == 0o600
    config_file = StackState.at(state).gateway_config
    assert load_config(config_file).audit.question_key_path == str(ring)
    assert plan.labels["config_sha256"] == up.labels["config_sha256"]  # plan saw what up wrote
    for form in _key_forms(ring):
        assert form not in config_file.read_text()


# -- llmctl audit --------------------------------------------------------------------------------
@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _record(rid: str, subject: str, question: str, key: Any, outcome: str = "answered") -> str:
    rec = {
        "request_id": rid,
        "time": f"2026-01-05T10:00:0{rid[-1]}Z",
        "endpoint": "ask",
        "outcome": outcome,
        "status": 200,
        "subject": subject,
        "question_hmac": key.digest(question),
        "question_key_id": key.key_id,
    }
    return json.dumps(rec) + "\n"


def test_cli_rotate_key_then_find_across_rotated_files(home: Path) -> None:
    state = StackState.of("hr-policy-assistant", "local")
    ring_path = ensure_question_keys(state.dir)
    old = load_ring(ring_path).active
    rotated = runner.invoke(app, ["audit", "rotate-key", str(HR), "-o", "json"])
    assert rotated.exit_code == 0, rotated.output
    out = json.loads(rotated.stdout)
    ring = load_ring(ring_path)
    assert out["key_id"] == ring.active_id != old.key_id and out["keys"] == 2
    new = ring.active
    q = "How many weeks of parental leave?"
    state.audit_file.parent.mkdir(parents=True)
    Path(f"{state.audit_file}.1").write_text(
        _record("r1", "alice", q, old) + _record("r2", "bob", "Other question?", old)
    )
    state.audit_file.write_text(_record("r3", "carol", q, new, outcome="no_source"))
    found = runner.invoke(app, ["audit", "find", str(HR), "--question", q, "--output", "json"])
    assert found.exit_code == 0, found.output
    data = json.loads(found.stdout)
    assert data["records_read"] == 3
    assert data["matches"] == [
        {
            "request_id": "r1",
            "time": "2026-01-05T10:00:01Z",
            "subject": "alice",
            "outcome": "answered",
            "key_id": old.key_id,
        },
        {
            "request_id": "r3",
            "time": "2026-01-05T10:00:03Z",
            "subject": "carol",
            "outcome": "no_source",
            "key_id": new.key_id,
        },
    ]
    text = runner.invoke(app, ["audit", "find", str(HR), "-q", q])
    assert text.exit_code == 0 and "2 of 3 records match" in text.stdout and "carol" in text.stdout
    none = runner.invoke(app, ["audit", "find", str(HR), "-q", "never asked"])
    assert none.exit_code == 0 and "no record matches" in none.stdout
    for form in _key_forms(ring_path):
        assert form not in rotated.output + found.output + text.output


def test_cli_rotate_key_text_prints_the_id_only(home: Path) -> None:
    ring_path = ensure_question_keys(StackState.of("hr-policy-assistant", "local").dir)
    result = runner.invoke(app, ["audit", "rotate-key", str(HR)])
    assert result.exit_code == 0, result.output
    assert load_ring(ring_path).active_id in result.stdout
    for form in _key_forms(ring_path):
        assert form not in result.output


def test_cli_errors_are_one_line(home: Path) -> None:
    env = {**os.environ, "LLMCTL_HOME": str(home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmctl", "audit", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
        )

    no_ring = cli("rotate-key", str(HR))
    assert no_ring.returncode == 1 and no_ring.stderr.count("\n") == 1
    assert no_ring.stderr.startswith("error:") and "llmctl up" in no_ring.stderr
    ensure_question_keys(StackState.of("hr-policy-assistant", "local", home).dir)
    no_trail = cli("find", str(HR), "-q", "x")
    assert no_trail.returncode == 1 and no_trail.stderr.count("\n") == 1
    assert "no audit trail" in no_trail.stderr
    k8s = cli("find", str(HR), "-q", "x", "--target", "prod")
    assert k8s.returncode == 1 and "local targets only" in k8s.stderr
    assert "Traceback" not in no_ring.stderr + no_trail.stderr + k8s.stderr
