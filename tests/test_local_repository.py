"""The local model-repository build: strict rendering, content-addressed cache, digest cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmctl.errors import BuildError
from llmctl.local.repository import DigestCache, LocalRepository, render
from llmctl.local.spec import EmbedderSpec, LlmSpec, LocalStackSpec


@pytest.fixture
def fake_models(tmp_path: Path) -> tuple[Path, Path]:
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 1000)
    folder = tmp_path / "minilm"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\1" * 100)
    return gguf, folder


def _spec(gguf: Path, folder: Path, **llm: object) -> LocalStackSpec:
    return LocalStackSpec(
        name="unit",
        llm=LlmSpec(gguf=gguf, threads=2, **llm),  # type: ignore[arg-type]
        embedder=EmbedderSpec(model_path=folder, threads=2),
    )


def test_render_fills_and_escapes():
    out = render('path: "{{ p }}" n: {{n}}', {"p": 'a"b\\c', "n": 3}, "t")
    assert out == 'path: "a\\"b\\\\c" n: 3'


def test_render_refuses_an_unfilled_placeholder():
    with pytest.raises(BuildError, match="t.tmpl: no value for placeholder.*missing"):
        render("x: {{ missing }}", {}, "t.tmpl")


def test_render_refuses_a_malformed_placeholder():
    with pytest.raises(BuildError, match="malformed placeholder"):
        render("x: {{ not valid }}", {}, "t.tmpl")


def test_build_then_rebuild_does_nothing(tmp_path, fake_models):
    """A real build: the embedder is exported to ONNX and checked against sentence-transformers."""
    from llmctl.local.spec import default_embedding_model

    repo = LocalRepository(tmp_path / "cache")
    spec = _spec(fake_models[0], default_embedding_model())
    first = repo.build(spec)
    assert [b.name for b in first] == ["tensorrt_llm", "embedder"]
    assert all(b.built for b in first)
    for b in first:
        config = (b.model_dir / "config.pbtxt").read_text()
        assert "{{" not in config and f'name: "{b.name}"' in config
        assert b.key in config
        assert (b.model_dir / "1" / "model.py").is_file()
        manifest = json.loads((b.path / "manifest.json").read_text())
        assert manifest["key"] == b.key and manifest["weights"]
    embedder = first[1]
    version = embedder.model_dir / "1"
    assert {"model.onnx", "tokenizer.json", "encoder.json", "onnx_encoder.py"} <= {
        p.name for p in version.iterdir()
    }
    assert embedder.manifest["export"]["min_cosine_vs_sentence_transformers"] >= 0.9999
    # the in-process baseline of the benchmarks runs that same version folder
    from llmctl.retrieval.embedders import InProcessEmbedder, OnnxEmbedder

    texts = ["How long must a password be?", "word " * 300, ""]
    served = OnnxEmbedder(version, threads=1).embed(texts)
    reference = InProcessEmbedder(threads=1).embed(texts)
    assert served.shape == (3, 384)
    assert float((served * reference).sum(axis=1).min()) > 0.9999
    second = repo.build(spec)
    assert not any(b.built for b in second)
    assert [b.key for b in second] == [b.key for b in first]
    assert repo.keys(spec) == {b.name: b.key for b in first}
    assert not list(repo.models_root.glob(".*"))  # no temp dirs left behind


def test_a_parameter_change_rebuilds_only_that_model(tmp_path, fake_models):
    repo = LocalRepository(tmp_path / "cache")
    before = repo.keys(_spec(*fake_models))
    after = repo.keys(_spec(*fake_models, context_tokens=4096))
    assert after["tensorrt_llm"] != before["tensorrt_llm"]
    assert after["embedder"] == before["embedder"]


def test_new_weights_change_the_key(tmp_path, fake_models):
    gguf, folder = fake_models
    repo = LocalRepository(tmp_path / "cache")
    before = repo.keys(_spec(gguf, folder))
    gguf.write_bytes(b"GGUF" + b"\1" * 2000)
    assert repo.keys(_spec(gguf, folder))["tensorrt_llm"] != before["tensorrt_llm"]


def test_an_embedder_that_cannot_be_exported_fails_cleanly(tmp_path, fake_models):
    repo = LocalRepository(tmp_path / "cache")
    with pytest.raises(BuildError, match="is not a sentence-transformers model folder"):
        repo.build(_spec(*fake_models))
    # the LLM model built; nothing of the failed embedder is left, not even a temp folder
    assert [p.name.split("-")[0] for p in repo.models_root.iterdir()] == ["tensorrt_llm"]


def test_missing_gguf_is_a_build_error(tmp_path, fake_models):
    _, folder = fake_models
    with pytest.raises(BuildError, match="GGUF model file not found"):
        LocalRepository(tmp_path / "cache").build(_spec(tmp_path / "absent.gguf", folder))


def test_digest_cache_does_not_rehash_an_unchanged_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"a" * 4096)
    cache = DigestCache(tmp_path / "digests.json")
    first = cache.file(path)
    cache.save()
    st = path.stat()
    path.write_bytes(b"b" * 4096)  # same size; restore the mtime: the cache must trust it
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert DigestCache(tmp_path / "digests.json").file(path) == first
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert DigestCache(tmp_path / "digests.json").file(path) != first
