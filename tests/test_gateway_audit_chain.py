"""The audit trail's hash chain: intact across rotation, retention and restarts, and broken,
with the place named, by a record removed or edited (``llmctl audit verify``)."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_gateway_support import audit_record

from llmctl.gateway.audit import GENESIS, AuditLog, read_records, trail_files
from llmctl.gateway.audit_chain import verify_trail


def _trail(path: Path, n: int, max_bytes: int = 10**9, **kw) -> None:
    log = AuditLog(path, max_bytes=max_bytes, backups=100, **kw)
    for i in range(n):
        log.write(audit_record(i))
    log.close()


def test_an_untouched_trail_verifies_across_rotation_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 30, max_bytes=1500)
    log = AuditLog(path, max_bytes=1500, backups=100)  # a restart continues the chain
    log.write(audit_record(99))
    log.close()
    assert len(trail_files(path)) > 3
    report = verify_trail(path)
    assert report.ok and report.records == 31, report.problem
    assert read_records(trail_files(path)[0])[0]["prev"] == GENESIS
    assert verify_trail(path, head=report.head).ok


def _rewrite(path: Path, edit) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_a_removed_record_breaks_the_chain_at_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 5)
    _rewrite(path, lambda lines: lines[:2] + lines[3:])
    report = verify_trail(path)
    assert not report.ok
    assert "audit.jsonl line 3 (request r3)" in report.problem


def test_an_edited_record_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 5)

    def edit(lines: list[bytes]) -> list[bytes]:
        rec = json.loads(lines[1])
        rec["subject"] = "someone-else"
        lines[1] = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        return lines

    _rewrite(path, edit)
    report = verify_trail(path)
    assert not report.ok and "line 3 (request r2)" in report.problem


def test_removing_the_oldest_records_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 5)
    _rewrite(path, lambda lines: lines[2:])
    report = verify_trail(path)
    assert not report.ok and "records before it were removed" in report.problem


def test_an_edited_newest_record_is_caught_against_a_noted_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 3)
    head = verify_trail(path).head
    _rewrite(path, lambda lines: lines[:-1] + [lines[-1].replace(b'"u2"', b'"u9"')])
    assert verify_trail(path).ok  # nothing after it to notice: why the head is worth noting
    assert not verify_trail(path, head=head).ok


def test_a_sealed_file_edited_is_caught_by_the_manifest(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 30, max_bytes=1500)
    sealed = trail_files(path)[1]
    lines = gzip.decompress(sealed.read_bytes()).splitlines(keepends=True)
    sealed.write_bytes(gzip.compress(b"".join(lines[:-1])))
    report = verify_trail(path)
    assert not report.ok and "sha256 differs from the manifest" in report.problem


def test_retention_deletes_files_and_the_chain_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    log = AuditLog(path, max_bytes=1500, backups=1, retention_days=30)
    for i in range(30):
        log.write(audit_record(i, old))
    for i in range(30, 60):
        log.write(audit_record(i))
    log.close()
    assert read_records(trail_files(path)[0])[0]["prev"] != GENESIS  # its predecessor is gone
    assert verify_trail(path).ok


@pytest.mark.parametrize("legacy", [2])
def test_records_from_before_the_chain_are_counted_not_failed(tmp_path: Path, legacy) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(audit_record(100 + i).to_line() for i in range(legacy)))  # no prev
    _trail(path, 3)
    report = verify_trail(path)
    assert report.ok and report.unchained == legacy and report.records == legacy + 3


def test_cli_audit_verify_passes_then_fails_with_exit_1(tmp_path: Path, monkeypatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from llmctl.cli import app
    from llmctl.state import StackState

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    root = Path(__file__).resolve().parent.parent
    bp = root / "blueprints" / "minimal.yaml"
    name = yaml.safe_load(bp.read_text())["metadata"]["name"]
    path = StackState.of(name, "local").audit_file
    path.parent.mkdir(parents=True)
    _trail(path, 4)
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", str(bp), "-o", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    _rewrite(path, lambda lines: lines[:1] + lines[2:])
    bad = runner.invoke(app, ["audit", "verify", str(bp)])
    assert bad.exit_code == 1 and "audit trail broken" in bad.output


def test_a_torn_last_line_is_cut_at_start_so_the_chain_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(path, 3)
    with open(path, "ab") as fh:
        fh.write(b'{"request_id":"torn","ti')  # a crash mid-line
    _trail(path, 2)
    assert [r["request_id"] for r in read_records(path)] == ["r0", "r1", "r2", "r0", "r1"]
    assert verify_trail(path).ok


def test_numbered_files_from_before_the_archive_come_first(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for n, first in ((2, 0), (1, 10)):  # the older scheme: .2 older than .1, no chain
        lines = b"".join(audit_record(first + i).to_line() for i in range(3))
        (tmp_path / f"audit.jsonl.{n}").write_bytes(lines)
    _trail(path, 30, max_bytes=1500)  # then an upgraded gateway rotates into the archive
    names = [f.name for f in trail_files(path)]
    assert names[:2] == ["audit.jsonl.2", "audit.jsonl.1"]
    report = verify_trail(path)
    assert report.ok and report.unchained == 6, report.problem


def test_a_failed_fsync_is_never_reported_durable_to_lines_it_covered(
    tmp_path: Path, monkeypatch
) -> None:
    import errno
    import os

    log = AuditLog(tmp_path / "audit.jsonl", max_bytes=10**9, backups=2, fsync=False)
    log.write(audit_record(1))
    log.write(audit_record(2))  # two lines written, neither synced yet (two threads, say)
    real = os.fsync
    calls = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", failing_once)
    with pytest.raises(OSError):
        log._sync(1)  # noqa: SLF001 - the first writer's fsync covers both lines and fails
    with pytest.raises(OSError, match="earlier fsync"):
        log._sync(2)  # noqa: SLF001 - the second must not take a later 0 as durability
    log.close()
