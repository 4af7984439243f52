"""``llmctl ingest`` without a running stack, and the Triton embedder against a real stack."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = ROOT / "blueprints" / "hr-policy-assistant.yaml"
CORPUS = ROOT / "blueprints" / "corpora" / "hr-policy"


def test_ingest_without_a_stack_says_run_up_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmctl.cli import main

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LLMCTL_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["llmctl", "ingest", str(BLUEPRINT)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "llmctl up" in err and "Traceback" not in err
    assert not (tmp_path / "home" / "hr-policy-assistant" / "local" / "index").exists()


class _OfflineEmbedder:
    """Stands in for the stack's Triton in CLI tests (the wiring, not the model, is under test)."""

    def __init__(self, url: str, **kw: object) -> None:
        from llmctl.retrieval.embedders import HashingEmbedder

        self._inner = HashingEmbedder()
        self.model_id, self.dim = self._inner.model_id, self._inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._inner.embed(texts)

    def close(self) -> None:
        pass


def test_ingest_cli_json_then_text_is_incremental(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import llmctl.cli.ingest as cli_ingest
    import llmctl.retrieval.embedders as embedders
    from llmctl.cli import main

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cli_ingest, "triton_grpc_url", lambda name, target: "127.0.0.1:1")
    monkeypatch.setattr(embedders, "TritonEmbedder", _OfflineEmbedder)

    monkeypatch.setattr(sys, "argv", ["llmctl", "ingest", str(BLUEPRINT), "--output", "json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and len(report["added"]) >= 32 and report["errors"] == []
    index = tmp_path / "home" / "hr-policy-assistant" / "local" / "index"
    assert Path(report["index_dir"]) == index.resolve()

    monkeypatch.setattr(sys, "argv", ["llmctl", "ingest", str(BLUEPRINT)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "added 0, updated 0, removed 0, unchanged" in out
    assert report["index_hash"][:16] in out and "(unchanged)" in out


@pytest.mark.stack
def test_triton_embedder_matches_in_process_and_ingests(local_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from llmctl.retrieval.documents import SourceSpec, read_sources
    from llmctl.retrieval.embedders import InProcessEmbedder, TritonEmbedder
    from llmctl.retrieval.index import ChunkIndex
    from llmctl.retrieval.ingest import ingest_documents

    target, _ = local_stack
    emb = TritonEmbedder(target.endpoints()["triton_grpc"], batch_size=16, concurrency=4)
    try:
        assert emb.ready() == (True, "")
        texts = [f"How many days of annual leave do I get? variant {i}" for i in range(50)]
        remote = emb.embed(texts)
        assert remote.shape == (50, 384) and remote.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(remote, axis=1), 1.0, atol=1e-4)
        local = InProcessEmbedder().embed(texts)
        assert float(np.min(np.sum(remote * local, axis=1))) > 0.999

        async def from_a_loop() -> np.ndarray:  # the gateway's path: aio client, no thread
            try:
                return await emb.aembed(texts[:70:7])
            finally:
                await emb.aclose()

        np.testing.assert_allclose(asyncio.run(from_a_loop()), remote[:70:7], atol=1e-5)

        read = read_sources([SourceSpec("hr-policy", CORPUS, sensitivity="confidential")])
        report = ingest_documents(read, emb, tmp_path / "index")
        assert report.ok and report.chunks == report.chunks_embedded
        index = ChunkIndex.open(tmp_path / "index")
        q = emb.embed(["What is the carry-over deadline for unused leave?"])[0]
        hits = index.search(q, ["all-employees"], 3)
        assert hits[0].doc_id == "hr/annual-leave"
    finally:
        emb.close()
