"""Engine cache: hit, miss, corruption, interrupted builds, listing and pruning (fake builder, no GPU)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engine_fixtures import FakeBuilder
from typer.testing import CliRunner

from llmctl.engine.cache import EngineCache, engine_cache_root
from llmctl.errors import BuildError

KEY = "0123456789abcdef"
INPUTS = {"spec": {"model_id": "m", "gpu_arch": "sm90"}}


def test_miss_builds_once_then_hits(tmp_path: Path) -> None:
    cache, fake = EngineCache(tmp_path), FakeBuilder()
    first = cache.ensure(KEY, INPUTS, fake)
    assert first.built and fake.runs == 1
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["inputs"] == INPUTS and manifest["key"] == KEY
    assert set(manifest["outputs"]) == {
        "engine/rank0.engine",
        "engine/config.json",
        "tokenizer/tokenizer.json",
    }
    again = cache.ensure(KEY, INPUTS, fake)
    assert not again.built and fake.runs == 1  # an existing valid engine is never rebuilt
    assert again.manifest == first.manifest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")] == []


def test_a_changed_byte_is_detected_and_rebuilt(tmp_path: Path) -> None:
    cache, fake = EngineCache(tmp_path), FakeBuilder()
    entry = cache.ensure(KEY, INPUTS, fake)
    engine = entry.engine_dir / "rank0.engine"
    data = bytearray(engine.read_bytes())
    data[5] ^= 0xFF  # same size: only the hash can tell
    engine.write_bytes(bytes(data))
    assert cache.verify(KEY)[0] == "corrupt"
    assert cache.verify(KEY, full=False)[0] == "ok"
    assert cache.lookup(KEY) is None
    rebuilt = cache.ensure(KEY, INPUTS, fake)
    assert rebuilt.built and fake.runs == 2 and cache.verify(KEY)[0] == "ok"


@pytest.mark.parametrize("damage", ["delete_file", "extra_file", "delete_manifest", "bad_manifest"])
def test_damaged_entries_are_rebuilt(tmp_path: Path, damage: str) -> None:
    cache, fake = EngineCache(tmp_path), FakeBuilder()
    entry = cache.ensure(KEY, INPUTS, fake)
    if damage == "delete_file":
        (entry.tokenizer_dir / "tokenizer.json").unlink()
    elif damage == "extra_file":
        (entry.engine_dir / "rank1.engine").write_bytes(b"stray")
    elif damage == "delete_manifest":
        (entry.path / "manifest.json").unlink()
    else:
        (entry.path / "manifest.json").write_text("{not json")
    assert cache.verify(KEY)[0] in ("corrupt", "partial")
    assert cache.ensure(KEY, INPUTS, fake).built and fake.runs == 2


def test_an_interrupted_build_leaves_nothing_under_the_key(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.ensure(KEY, INPUTS, FakeBuilder(fail_after_files=True))
    assert not cache.path(KEY).exists()
    assert not any(p.name.startswith(".build-") for p in tmp_path.iterdir())
    assert cache.ensure(KEY, INPUTS, FakeBuilder()).built


def test_a_crashed_build_folder_is_cleaned_up_and_rebuilt(tmp_path: Path) -> None:
    """A killed process (no chance to clean up) leaves a temp folder; the next build removes it."""
    cache, fake = EngineCache(tmp_path), FakeBuilder()
    leftover = tmp_path / f".build-{KEY}-x1y2z3"
    (leftover / "engine").mkdir(parents=True)
    (leftover / "engine" / "rank0.engine").write_bytes(b"half")
    assert [r.state for r in cache.entries()] == ["partial"]
    entry = cache.ensure(KEY, INPUTS, fake)
    assert entry.built and not leftover.exists()


def test_a_build_that_writes_nothing_fails(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="produced no files"):
        EngineCache(tmp_path).ensure(KEY, INPUTS, lambda out, progress: None)
    assert not EngineCache(tmp_path).path(KEY).exists()


def _aged(cache: EngineCache, key: str, when: float) -> None:
    cache.ensure(key, INPUTS, FakeBuilder())
    os.utime(cache.path(key) / ".last_used", (when, when))


def test_list_and_gc_keep_the_most_recently_used(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    for i, key in enumerate(["aaaa000000000000", "bbbb000000000000", "cccc000000000000"]):
        _aged(cache, key, 1_000_000 + i * 1000)
    broken = cache.ensure("dddd000000000000", INPUTS, FakeBuilder())
    (broken.path / "manifest.json").unlink()
    rows = cache.entries()
    assert [r.key for r in rows if r.state == "ok"] == [
        "cccc000000000000",
        "bbbb000000000000",
        "aaaa000000000000",
    ]
    assert {r.key: r.state for r in rows}["dddd000000000000"] == "partial"
    newest = next(r for r in rows if r.key == "cccc000000000000")
    assert newest.model == "m" and newest.gpu_arch == "sm90" and newest.size_bytes > 0
    cache.lookup("aaaa000000000000")  # a hit makes it the most recently used
    removed = {r.key for r in cache.gc(keep=2)}
    assert removed == {"bbbb000000000000", "dddd000000000000"}
    assert {r.key for r in cache.entries()} == {"aaaa000000000000", "cccc000000000000"}
    assert len(cache.gc(keep=0)) == 2 and cache.entries() == []


def test_gc_spares_a_build_in_progress(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    seen: dict[str, list[str]] = {}

    def builder(out: Path, progress: object) -> None:
        (out / "f").write_text("x")
        seen["during"] = [r.state for r in cache.entries()]
        cache.gc(keep=0)
        assert out.exists()

    cache.ensure(KEY, INPUTS, builder)
    assert seen["during"] == ["building"]
    assert cache.verify(KEY)[0] == "ok"


def test_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMCTL_ENGINE_CACHE", raising=False)
    monkeypatch.setenv("LLMCTL_CACHE", str(tmp_path / "c"))
    assert engine_cache_root() == tmp_path / "c" / "engines"
    monkeypatch.setenv("LLMCTL_ENGINE_CACHE", str(tmp_path / "e"))
    assert engine_cache_root() == tmp_path / "e"


def test_cli_lists_and_prunes(tmp_path: Path) -> None:
    from llmctl.cli import app

    cache = EngineCache(tmp_path)
    _aged(cache, "aaaa000000000000", 1_000_000)
    _aged(cache, "bbbb000000000000", 2_000_000)
    runner = CliRunner()
    out = runner.invoke(app, ["engines", "list", "--cache", str(tmp_path), "-o", "json"])
    assert out.exit_code == 0, out.output
    assert [r["key"] for r in json.loads(out.output)] == ["bbbb000000000000", "aaaa000000000000"]
    out = runner.invoke(app, ["engines", "gc", "--keep", "1", "--cache", str(tmp_path)])
    assert out.exit_code == 0 and "removed aaaa000000000000" in out.output
    out = runner.invoke(app, ["engines", "list", "--cache", str(tmp_path)])
    assert out.exit_code == 0 and "bbbb000000000000" in out.output
