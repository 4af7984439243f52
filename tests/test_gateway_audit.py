"""The audit trail under faults and over time: a sink that fails (full, immutable) is reported and
recovers without a restart, rotated files are sealed into an archive that keeps what retention
promises, and unauthenticated floods cannot push the retained window out.

The failures are the kernel's own: ``/dev/full`` answers every write with ENOSPC, and
``chattr +i`` (root only, as CI runs) makes a file immutable so a write gets EPERM.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from blueprint_paths import absolute_paths
from test_gateway_support import (
    CORPUS,
    EchoLLM,
    ServerThread,
    audit_record,
    build_index,
    chattr_works,
    make_config,
)
from test_gateway_support import in_process_retriever as _retriever

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import (
    AuditLog,
    AuditUnavailable,
    read_records,
    read_trail,
    trail_files,
)
from llmctl.gateway.audit_archive import AuditArchive, capacity_problem, retention_bytes
from llmctl.gateway.config import RateLimitConfig

NEEDS_CHATTR = pytest.mark.skipif(
    not chattr_works(),
    reason="chattr +i needs root on a filesystem with inode flags (CI runs as root)",
)


# -- a failing sink -----------------------------------------------------------------------------


def test_full_sink_raises_and_recovers_on_a_fresh_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    log = AuditLog(path, max_bytes=10**9, backups=2)
    with pytest.raises(AuditUnavailable, match="No space left on device"):
        log.write(audit_record(1))
    assert log.failing and str(path) in log.failing
    assert log.probe()[0] is False
    path.unlink()  # the operator frees the disk: here, the sink becomes a real file again
    log._last_probe = float("-inf")  # noqa: SLF001 - skip the once-a-second throttle
    assert log.probe() == (True, "")
    log.write(audit_record(2))
    log.close()
    records = read_records(path)
    assert [r["outcome"] for r in records] == ["sink_recovered", "answered"]
    assert "write(s) failed" in records[0]["error"]


@NEEDS_CHATTR
def test_immutable_sink_raises_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=10**9, backups=2)
    log.write(audit_record(1))
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        with pytest.raises(AuditUnavailable, match="Operation not permitted"):
            log.write(audit_record(2))
        with pytest.raises(AuditUnavailable):  # the retry on a fresh descriptor fails too
            log.write(audit_record(3))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    log.write(audit_record(4))
    log.close()
    records = read_records(path)
    assert [r["request_id"] for r in records[:2]] == ["r1", "r4"]
    assert records[2]["outcome"] == "sink_recovered" and "2 write(s) failed" in records[2]["error"]


def test_a_short_write_is_cut_off_so_only_whole_lines_remain(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=10**9, backups=2)
    log.write(audit_record(1))
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # what a disk filling mid-line does
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(AuditUnavailable, match="short write"):
        log.write(audit_record(2))
    monkeypatch.setattr(os, "write", real_write)
    log.write(audit_record(3))
    log.close()
    records = read_records(path)  # whole lines only; the outage leaves its own record
    assert [r["request_id"] for r in records[:2]] == ["r1", "r3"]
    assert [r["outcome"] for r in records[2:]] == ["sink_recovered"]


# -- the archive and retention ------------------------------------------------------------------


def test_rotation_seals_files_with_a_manifest_of_hashes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=1500, backups=2)
    for i in range(60):
        log.write(audit_record(i))
    log.close()
    archive = AuditArchive(path)
    lines = [json.loads(ln) for ln in archive.manifest.read_text().splitlines()]
    sealed = [e for e in lines if "sha256" in e]
    assert len(sealed) >= 3  # more than `backups`: with no retention the newest 2 stay...
    kept = archive.entries()
    assert len(kept) == 2 and all((archive.dir / e["file"]).is_file() for e in kept)
    assert sum("deleted_at" in e for e in lines) == len(sealed) - 2  # ...and deletions say so
    assert archive.verify() == []
    assert all(oct((archive.dir / e["file"]).stat().st_mode & 0o777) == "0o600" for e in kept)
    # tampering with a sealed file is visible against the manifest
    victim = archive.dir / kept[0]["file"]
    victim.write_bytes(gzip.compress(b'{"request_id":"forged"}\n'))
    assert archive.verify() == [f"{kept[0]['file']}: sha256 differs from the manifest"]


def test_retention_never_deletes_records_younger_than_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    log = AuditLog(path, max_bytes=1500, backups=1, retention_days=30)
    for i in range(30):  # well past `backups` rotations of records older than the retention
        log.write(audit_record(i, old))
    for i in range(30, 90):  # then many more rotations of records within it
        log.write(audit_record(i))
    log.close()
    kept = {r["request_id"] for r in read_trail(path)}
    assert {f"r{i}" for i in range(30, 90)} <= kept  # every record within retention is kept
    assert len(kept) < 90  # and expired ones were deleted
    reasons = [json.loads(ln).get("reason") for ln in AuditArchive(path).manifest.open()]
    assert "older than the retention of 30 days" in reasons


def test_a_file_left_unsealed_by_a_crash_is_sealed_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    archive = AuditArchive(path)
    archive.dir.mkdir()
    raw = archive.dir / "audit-20260101T000000000000Z.jsonl"
    raw.write_bytes(audit_record(7).to_line())
    AuditLog(path, max_bytes=10**9, backups=2).close()
    assert not raw.exists() and [p.name for p in trail_files(path)][0] == raw.name + ".gz"
    assert [r["request_id"] for r in read_trail(path)] == ["r7"]


def test_capacity_check_refuses_a_volume_too_small_for_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    assert capacity_problem(path, 0, 10_000) is None  # nothing promised, nothing to check
    free = shutil.disk_usage(tmp_path).free
    per_day = int(free / (retention_bytes(1, 1) * 2555)) * 4 + 1
    problem = capacity_problem(path, 2555, per_day)
    assert problem and "2555 days" in problem and "free space" in problem
    assert "\n" not in problem


# -- the gateway with a failing sink, and unauthenticated floods ----------------------------------


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory):
    from llmctl.retrieval.embedders import InProcessEmbedder

    embedder = InProcessEmbedder(threads=1)
    index_dir, _ = build_index(tmp_path_factory.mktemp("corpus"), CORPUS, embedder)
    return index_dir, embedder


def test_unauthenticated_flood_is_limited_by_address_and_barely_recorded(
    tmp_path: Path, corpus_index
) -> None:
    index_dir, embedder = corpus_index
    state = tmp_path / "state"
    config = make_config(
        state,
        index_dir=index_dir,
        rate=RateLimitConfig(
            requests_per_minute=100_000,
            burst=100_000,
            unauthenticated_per_minute=0.5,  # no refill within the test
            unauthenticated_burst=5,
        ),
    )
    app = create_app(config, retriever=_retriever(index_dir, embedder), llm=EchoLLM())
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = [client.post("/v1/ask", json={"question": "q"}).status_code for _ in range(200)]
        metrics = client.get("/metrics").text
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    records = read_records(state / "audit" / "audit.jsonl")
    # 5 refusals with 401, then one record for the 429s of this window: 200 requests, 6 lines
    assert [r["status"] for r in records] == [401] * 5 + [429]
    assert all(r["client"] == "127.0.0.1" for r in records)
    assert 'llmctl_gateway_requests_total{endpoint="ask",outcome="rate_limited"} 195.0' in metrics


def test_up_refuses_a_sink_that_cannot_hold_the_retention(tmp_path: Path, repo_root) -> None:
    """`llmctl up`'s gateway step stops with one line before anything starts."""
    import yaml

    from llmctl.blueprint import load_blueprint
    from llmctl.errors import StackError
    from llmctl.gateway.component import gateway_component

    doc = yaml.safe_load((repo_root / "blueprints" / "hr-policy-assistant.yaml").read_text())
    doc["requirements"]["users"]["requestsPerDay"] = 10**12  # 2555 days of that: petabytes
    absolute_paths(doc, repo_root / "blueprints")
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    bp = load_blueprint(path)
    state = tmp_path / "state"
    with pytest.raises(StackError, match="2555 days at 1000000000000 requests a day") as err:
        gateway_component(state, bp, triton_url="", triton_grpc_url="", index_dir=None)
    assert "\n" not in str(err.value)
    assert not (state / "gateway.json").exists()
