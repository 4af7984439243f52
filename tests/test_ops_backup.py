"""``llmctl backup`` / ``restore`` on a stack state built by hand: a real LanceDB index (hashing
embedder), a real audit trail with a sealed archive, a question key ring; no processes.

The restore drill against a real local stack (Triton, gateway) is ``test_restore_drill`` below.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmctl.blueprint import load_blueprint
from llmctl.blueprint.model import Blueprint
from llmctl.cli import app
from llmctl.digest import sha256_file
from llmctl.gateway.audit import AuditLog, AuditRecord, last_line, line_hash, read_trail
from llmctl.gateway.questionkeys import ensure_question_keys
from llmctl.ops import backup as ops
from llmctl.ops import live_copy
from llmctl.ops.backup import BackupError, backup, restore, verify_backup
from llmctl.retrieval.chunking import ApproxTokenizer
from llmctl.retrieval.embedders import HashingEmbedder
from llmctl.retrieval.index import ChunkIndex
from llmctl.retrieval.ingest import ingest
from llmctl.starter import write_starter
from llmctl.state import StackState

runner = CliRunner()
DOCS = {
    "vacation.md": "# Vacation\n\nEvery employee receives 27 days of paid vacation a year.\n",
    "expenses.md": "# Expenses\n\nHotels are reimbursed up to 180 euros per night.\n",
}


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        request_id=f"r{i:04d}",
        time="2025-01-01T00:00:00.000Z",
        endpoint="ask",
        outcome="answered",
        status=200,
        subject="alice",
        question_hmac="ab" * 32,
    )


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Blueprint, StackState]:
    """A stopped stack's state: index, audit trail (rotated twice), key ring, dev key, stack.json
    and a cached build manifest."""
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLMCTL_CACHE", str(tmp_path / "cache"))
    bp = load_blueprint(write_starter("bk", tmp_path))
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).write_text(text)
    state = StackState.of(bp.name, "local")
    report = ingest(bp, HashingEmbedder(), state.index_dir, tokenizer=ApproxTokenizer())
    assert report.chunks >= 2, report.to_dict()
    log = AuditLog(state.audit_file, max_bytes=1200, backups=10)
    for i in range(12):
        log.write(_record(i))
    log.close()
    ensure_question_keys(state.dir)
    (state.auth_dir / "dev-signing-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nx\n")
    os.chmod(state.auth_dir / "dev-signing-key.pem", 0o600)
    state.stack_file.write_text(json.dumps({"models": {"ensemble": "k1"}, "plan_hash": "p"}))
    build = tmp_path / "cache" / "local" / "models" / "ensemble-k1"
    build.mkdir(parents=True)
    (build / "manifest.json").write_text('{"name": "ensemble"}\n')
    state.gateway_config.parent.mkdir(parents=True, exist_ok=True)
    state.gateway_config.write_text("{}\n")
    return bp, state


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _wipe(state: StackState) -> None:
    shutil.rmtree(state.dir)


def test_backup_lists_every_file_with_its_hash_and_leaves_secrets_out(stack, tmp_path):
    bp, state = stack
    result = backup(bp, "local", str(tmp_path / "bk1"))
    dest = tmp_path / "bk1"
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    on_disk = {k for k in _files(dest) if k != "MANIFEST.json"}
    assert {f["path"] for f in manifest["files"]} == on_disk
    for f in manifest["files"]:
        assert sha256_file(dest / f["path"]) == f["sha256"]
        assert (dest / f["path"]).stat().st_size == f["bytes"]
    assert manifest["blueprint"] == {
        "name": "bk",
        "hash": bp.hash,
        "applied_hash": None,
        "file": "config/bk.yaml",
    }
    assert manifest["target"] == "local" and manifest["llmctl_version"]
    assert manifest["index_hash"] == ChunkIndex.open(state.index_dir).index_hash
    assert manifest["audit"]["records"] == 12 == len(read_trail(state.audit_file))
    assert any(p.startswith("audit/audit-archive/") for p in on_disk)
    assert "audit/audit-archive/MANIFEST.jsonl" in on_disk
    assert manifest["models"]["builds"]["ensemble"] == {
        "key": "k1",
        "manifest": "models/ensemble-k1.manifest.json",
    }
    assert {"config/bk.yaml", "config/gateway.json", "models/builds.json"} <= on_disk
    # no secrets unless asked, and no key material anywhere in the backup
    assert manifest["secrets"]["included"] is False and manifest["secrets"]["files"] == []
    ring = (state.auth_dir / "question-keys.json").read_bytes()
    secret = json.loads(ring)["keys"][0]["key"].encode()
    assert not any(secret in data or b"PRIVATE KEY" in data for data in _files(dest).values())
    assert result.to_dict()["secrets_included"] is False
    assert not list(tmp_path.glob(".bk1.partial-*"))


def test_include_secrets_copies_them_0600_and_says_so(stack, tmp_path):
    bp, state = stack
    backup(bp, "local", str(tmp_path / "bk"), include_secrets=True)
    manifest = verify_backup(tmp_path / "bk")
    assert manifest["secrets"]["included"] is True
    assert sorted(manifest["secrets"]["files"]) == [
        "secrets/dev-signing-key.pem",
        "secrets/question-keys.json",
    ]
    for rel in manifest["secrets"]["files"]:
        assert stat.S_IMODE((tmp_path / "bk" / rel).stat().st_mode) == 0o600
    _wipe(state)
    restore(bp, "local", f"file://{tmp_path / 'bk'}")
    ring = state.auth_dir / "question-keys.json"
    assert stat.S_IMODE(ring.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.auth_dir.stat().st_mode) == 0o700
    assert (state.auth_dir / "dev-signing-key.pem").read_text().startswith("-----BEGIN")


def test_restore_brings_back_the_index_and_a_trail_that_continues(stack, tmp_path):
    bp, state = stack
    records = read_trail(state.audit_file)
    index_hash = ChunkIndex.open(state.index_dir).index_hash
    backup(bp, "local", str(tmp_path / "bk"))
    _wipe(state)
    result = restore(bp, "local", str(tmp_path / "bk"))
    assert result.restored == ["index", "audit"]
    assert any("no secrets" in w for w in result.warnings)
    index = ChunkIndex.open(state.index_dir)
    assert index.index_hash == index_hash and index.count() > 0
    assert read_trail(state.audit_file) == records
    tail = last_line(state.audit_file)
    log = AuditLog(state.audit_file, max_bytes=1 << 20, backups=10)
    log.write(_record(99))
    log.close()
    after = read_trail(state.audit_file)
    assert after[:-1] == records and after[-1]["prev"] == line_hash(tail or b"")


def test_a_tampered_missing_or_extra_file_refuses_and_restores_nothing(stack, tmp_path):
    bp, state = stack
    backup(bp, "local", str(tmp_path / "bk"))
    _wipe(state)
    good = tmp_path / "good"
    shutil.copytree(tmp_path / "bk", good)

    live = tmp_path / "bk" / "audit" / "audit.jsonl"
    live.write_bytes(live.read_bytes().replace(b"alice", b"mallo"))
    with pytest.raises(BackupError, match=r"audit\.jsonl: sha256 differs") as info:
        restore(bp, "local", str(tmp_path / "bk"))
    assert "\n" not in str(info.value)
    assert not state.index_dir.exists() and not state.audit_file.exists()

    shutil.rmtree(tmp_path / "bk")
    shutil.copytree(good, tmp_path / "bk")
    (tmp_path / "bk" / "index" / "manifest.json").unlink()
    with pytest.raises(BackupError, match=r"index/manifest\.json: listed .* but missing"):
        restore(bp, "local", str(tmp_path / "bk"))

    (good / "index" / "extra.txt").write_text("?")
    with pytest.raises(BackupError, match="extra.txt: not listed"):
        restore(bp, "local", str(good))
    assert not state.index_dir.exists() and not state.audit_file.parent.exists()


def test_restore_refuses_a_running_stack_or_a_state_that_holds_data(stack, tmp_path):
    bp, state = stack
    backup(bp, "local", str(tmp_path / "bk"))
    with pytest.raises(BackupError, match="index already exists.*llmctl down"):
        restore(bp, "local", str(tmp_path / "bk"))
    shutil.rmtree(state.index_dir)
    shutil.rmtree(state.audit_file.parent)
    state.components_dir.mkdir()
    record: dict[str, Any] = {
        "name": "triton",
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "start_ticks": 0,
        "started_at": 0.0,
        "argv": ["tritonserver"],
        "health_url": "http://127.0.0.1:1/v2/health/live",
        "log_file": str(state.log_file("triton")),
        "ports": {"http": 1},
        "labels": {},
    }
    (state.components_dir / "triton.json").write_text(json.dumps(record))
    with pytest.raises(BackupError, match="is running: `llmctl down"):
        restore(bp, "local", str(tmp_path / "bk"))
    assert not state.index_dir.exists() and not state.audit_file.parent.exists()


def test_restore_refuses_another_blueprint_and_warns_on_another_hash(stack, tmp_path):
    bp, state = stack
    backup(bp, "local", str(tmp_path / "bk"))
    _wipe(state)
    (tmp_path / "o").mkdir()
    other = load_blueprint(write_starter("other", tmp_path / "o"))
    with pytest.raises(BackupError, match="blueprint 'bk', not 'other'"):
        restore(other, "local", str(tmp_path / "bk"))
    text = bp.path.read_text().replace("peakConcurrent: 20", "peakConcurrent: 21")
    changed = tmp_path / "changed.yaml"
    changed.write_text(text)
    result = restore(load_blueprint(changed), "local", str(tmp_path / "bk"))
    assert any("taken with blueprint" in w for w in result.warnings)


def test_a_failed_backup_leaves_no_destination(stack, tmp_path, monkeypatch):
    bp, _ = stack

    def boom(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ops, "_models", boom)
    with pytest.raises(OSError, match="disk full"):
        backup(bp, "local", str(tmp_path / "out" / "bk"))
    assert list((tmp_path / "out").iterdir()) == []


def test_destination_must_be_new_or_empty_and_a_directory(stack, tmp_path):
    bp, _ = stack
    (tmp_path / "empty").mkdir()
    backup(bp, "local", str(tmp_path / "empty"))  # an empty folder is fine
    with pytest.raises(BackupError, match="already holds a backup"):
        backup(bp, "local", str(tmp_path / "empty"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(BackupError, match="is not empty"):
        backup(bp, "local", str(tmp_path / "busy"))
    with pytest.raises(BackupError, match="only directories .* supported") as info:
        backup(bp, "local", "s3://bucket/backups/bk")
    assert "\n" not in str(info.value)


def test_kubernetes_targets_are_refused_with_the_way_they_are_backed_up(stack, tmp_path):
    root = Path(__file__).resolve().parents[1]
    bp = load_blueprint(root / "blueprints" / "hr-policy-assistant.yaml")
    with pytest.raises(BackupError, match="is kubernetes: .*VolumeSnapshots"):
        backup(bp, "prod", str(tmp_path / "bk"))
    assert not (tmp_path / "bk").exists()


def test_index_copy_is_pinned_to_one_version_and_checked_against_its_hash(
    stack, tmp_path, monkeypatch
):
    _, state = stack
    index = ChunkIndex.open(state.index_dir, refresh_s=None)
    table = state.index_dir / "chunks.lance"
    version = live_copy._latest_version(table)
    first = sorted(index.doc_hashes())[0]
    index.replace_documents(None, [first])  # a later commit the manifest does not know
    assert live_copy._latest_version(table) == version + 1
    pinned = tmp_path / "pinned"
    live_copy._copy_table(table, pinned / "chunks.lance", version)
    assert live_copy._latest_version(pinned / "chunks.lance") == version
    assert ChunkIndex.open(pinned, refresh_s=None).count() > index.count()
    # the whole copy: the latest version no longer matches manifest.json, so it is retried
    monkeypatch.setattr(live_copy, "INDEX_ATTEMPTS", 2)
    monkeypatch.setattr(live_copy.time, "sleep", lambda _s: None)
    with pytest.raises(BackupError, match="index changed during each of 2 attempts"):
        live_copy.copy_index(state.index_dir, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_audit_copy_stops_at_the_last_whole_line(stack, tmp_path):
    _, state = stack
    with open(state.audit_file, "ab") as fh:
        fh.write(b'{"request_id":"half-writ')
    live_copy.copy_audit(state.audit_file, tmp_path / "audit")
    copied = (tmp_path / "audit" / "audit.jsonl").read_bytes()
    assert copied.endswith(b"\n") and b"half-writ" not in copied
    assert stat.S_IMODE((tmp_path / "audit" / "audit.jsonl").stat().st_mode) == 0o600


def test_the_verbs_through_the_cli(stack, tmp_path):
    bp, state = stack
    out = runner.invoke(app, ["backup", str(bp.path), "--to", str(tmp_path / "bk"), "-o", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert doc["secrets_included"] is False and doc["audit_records"] == 12
    _wipe(state)
    asks = runner.invoke(
        app, ["restore", str(bp.path), "--from", str(tmp_path / "bk"), "-o", "json"]
    )
    assert "needs -y" in str(asks.exception)
    done = runner.invoke(
        app, ["restore", str(bp.path), "--from", str(tmp_path / "bk"), "-y", "-o", "json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["restored"] == ["index", "audit"]
    text = runner.invoke(app, ["backup", str(bp.path), "--to", "s3://b/k"])
    assert "only directories" in str(text.exception)


def test_restore_asks_only_after_the_backup_checked_out(stack, tmp_path):
    bp, state = stack
    assert runner.invoke(app, ["backup", str(bp.path), "--to", str(tmp_path / "bk")]).exit_code == 0
    _wipe(state)
    no = runner.invoke(app, ["restore", str(bp.path), "--from", str(tmp_path / "bk")], input="n\n")
    assert "taken" in no.output and no.exit_code == 1  # asked, declined: nothing restored
    assert not state.audit_file.exists()
    manifest = json.loads((tmp_path / "bk" / "MANIFEST.json").read_text())
    victim = tmp_path / "bk" / manifest["files"][0]["path"]
    victim.write_bytes(victim.read_bytes() + b"x")
    bad = runner.invoke(app, ["restore", str(bp.path), "--from", str(tmp_path / "bk")], input="y\n")
    assert bad.exit_code == 1 and "taken" not in bad.output  # refused before any question
    assert not state.audit_file.exists()


def test_the_snapshot_job_creates_one_per_claim_and_keeps_the_newest(tmp_path):
    from llmctl.ops import snapshots

    template = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "hr-index", "namespace": "hr"},
        "spec": {"source": {"persistentVolumeClaimName": "hr-index"}},
    }
    existing = [
        {"metadata": {"name": f"hr-index-{d}", "creationTimestamp": f"2025-01-{d}T03:00:00Z"}}
        for d in ("01", "02", "03", "04")
    ]
    calls: list[tuple[str, str, Any]] = []

    def request(method: str, path: str, body: Any) -> dict[str, Any]:
        calls.append((method, path, body))
        return {"items": existing} if method == "GET" else {}

    done = snapshots.run([template], "hr", 2, request, stamp="20250105-030000")
    api = "/apis/snapshot.storage.k8s.io/v1/namespaces/hr/volumesnapshots"
    method, path, body = calls[0]
    assert (method, path) == ("POST", api)
    assert body["metadata"]["name"] == "hr-index-20250105-030000"
    assert body["metadata"]["labels"] == {"llmctl.dev/snapshot-of": "hr-index"}
    assert template["metadata"] == {"name": "hr-index", "namespace": "hr"}  # not mutated
    assert calls[1][:2] == ("GET", f"{api}?labelSelector=llmctl.dev/snapshot-of%3Dhr-index")
    assert [c[1] for c in calls[2:]] == [f"{api}/hr-index-02", f"{api}/hr-index-01"]
    assert done[0] == "created hr-index-20250105-030000" and len(done) == 3


@pytest.mark.stack
def test_restore_drill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """up, ingest, ask; backup; down and delete the whole state folder; restore; up (no ingest):
    the same question cites the same chunks and the trail still holds the earlier records."""
    import sys

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(
        "PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    path = str(write_starter("drill", tmp_path))
    for name, text in DOCS.items():
        (tmp_path / "docs" / name).write_text(text)
    state = StackState.of("drill", "local")
    question = ["How many vacation days do employees get?", "--as", "alice"]
    question += ["--groups", "all-employees", "-o", "json"]

    def ok(*argv: str) -> str:
        result = runner.invoke(app, list(argv))
        assert result.exit_code == 0, (argv, result.output, result.exception)
        return result.output

    def cited(output: str) -> list[tuple[str, str]]:
        answer = json.loads(output)
        assert answer["citations"], answer
        return [(c["doc_id"], c["chunk_id"]) for c in answer["citations"]]

    try:
        ok("up", path, "-y")
        assert json.loads(ok("ingest", path, "-o", "json"))["ok"]
        before = cited(ok("ask", path, *question))
        records = read_trail(state.audit_file)
        assert records
        made = json.loads(ok("backup", path, "--to", str(tmp_path / "bk"), "-o", "json"))
        assert made["audit_records"] >= len(records)
        ok("down", path)
        shutil.rmtree(state.dir)
        ok("restore", path, "--from", str(tmp_path / "bk"), "-y")
        ok("up", path, "-y")
        assert cited(ok("ask", path, *question)) == before
        after = read_trail(state.audit_file)
        assert [r["request_id"] for r in after[: len(records)]] == [
            r["request_id"] for r in records
        ]
        assert len(after) > len(records)
    finally:
        runner.invoke(app, ["down", path])
