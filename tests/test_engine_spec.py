"""Build specification and engine key: derived from blueprint + plan; only engine-relevant fields count."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_fixtures import REVISION, base_doc, changed, fixed_plan, write_blueprint

from llmctl.engine.build import engine_version, resolve
from llmctl.engine.spec import derive_spec, engine_key, gpu_arch
from llmctl.errors import BuildError


def key_of(tmp_path: Path, doc: dict, plan=None) -> str:
    return engine_version(write_blueprint(tmp_path, doc), "prod", plan or fixed_plan())


def test_spec_takes_the_plan_and_the_blueprint(tmp_path: Path) -> None:
    bp = write_blueprint(tmp_path, base_doc())
    spec = derive_spec(bp, fixed_plan(precision="fp8", tp=2, max_batch_size=48))
    assert (spec.quantization, spec.kv_cache_dtype, spec.dtype) == ("fp8", "fp8", "bfloat16")
    assert (spec.tp, spec.pp, spec.max_batch_size) == (2, 1, 48)
    assert (spec.max_input_len, spec.max_seq_len) == (2048, 2560)
    assert spec.max_input_len <= spec.max_num_tokens <= 48 * 2048
    assert spec.gpu_arch == "sm90" and spec.tensorrt_llm == "0.16.0"
    assert spec.checkpoint.identity() == {
        "hf": "meta-llama/Llama-3.1-8B-Instruct",
        "revision": REVISION,
    }
    p = spec.plugins
    assert (
        p.context_fmha
        and p.use_paged_context_fmha
        and p.remove_input_padding
        and p.multiple_profiles
    )


def test_explicit_engine_settings_win_over_the_plan(tmp_path: Path) -> None:
    doc = changed(
        base_doc(), "engine", {"tensorParallel": 4, "maxBatchSize": 8, "quantization": "int8_wo"}
    )
    doc = changed(doc, "model.precision", "fp16")
    spec = derive_spec(write_blueprint(tmp_path, doc), fixed_plan(precision="fp8"))
    assert (spec.tp, spec.max_batch_size, spec.quantization, spec.dtype) == (
        4,
        8,
        "int8_wo",
        "float16",
    )
    assert spec.kv_cache_dtype is None


@pytest.mark.parametrize(
    ("gpu", "arch"),
    [
        ("A100-SXM-80GB", "sm80"),
        ("A10G", "sm86"),
        ("L4", "sm89"),
        ("H100-SXM-80GB", "sm90"),
        ("B200", "sm100"),
    ],
)
def test_gpu_architecture(gpu: str, arch: str) -> None:
    assert gpu_arch(gpu) == arch


def test_fp8_on_ampere_is_refused(tmp_path: Path) -> None:
    bp = write_blueprint(tmp_path, base_doc())
    with pytest.raises(BuildError, match="fp8 needs"):
        derive_spec(bp, fixed_plan(gpu="A100-SXM-80GB", precision="fp8"))


def test_unpinned_revision_needs_the_cache_or_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    doc = base_doc()
    del doc["model"]["revision"]  # the schema only admits a commit; absent means "main"
    with pytest.raises(BuildError, match="not a pinned commit"):
        key_of(tmp_path, doc)
    refs = tmp_path / "hf" / "models--meta-llama--Llama-3.1-8B-Instruct" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(REVISION)
    assert key_of(tmp_path, doc) == key_of(tmp_path, base_doc())  # "main" resolved offline


def test_local_checkpoint_is_identified_by_its_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"a": 1}')
    (ckpt / "model.safetensors").write_bytes(b"weights-1")
    doc = changed(base_doc(), "model.id", str(ckpt))
    first = key_of(tmp_path, doc)
    assert first == key_of(tmp_path, doc)
    (ckpt / "model.safetensors").write_bytes(b"weights-2")
    assert key_of(tmp_path, doc) != first


ENGINE_FIELDS = [
    ("model.maxInputTokens", 4096),
    ("model.maxOutputTokens", 1024),
    ("model.revision", "1" * 40),
    ("model.id", "meta-llama/Llama-3.1-70B-Instruct"),
    ("model.precision", "fp16"),
    ("engine.quantization", "int8_wo"),
    ("engine.tensorParallel", 2),
    ("engine.maxBatchSize", 64),
    ("engine.tritonImage", "nvcr.io/nvidia/tritonserver:24.11-trtllm-python-py3"),
]
OTHER_FIELDS = [
    ("gates", {"load": {"p95LatencyMs": 1234}}),
    ("requirements.slo", {"ttftP95Ms": 999, "latencyP95Ms": 5000}),
    ("capacity.replicas", {"min": 3, "max": 9}),
    ("engine.kvCacheFreeGpuMemFraction", 0.5),
    ("metadata.description", "another words"),
    ("network.rateLimit", {"requestsPerMinute": 5, "burst": 1}),
]


@pytest.mark.parametrize(("field", "value"), ENGINE_FIELDS)
def test_a_field_that_changes_the_engine_changes_the_key(
    tmp_path: Path, field: str, value: object
) -> None:
    assert key_of(tmp_path, changed(base_doc(), field, value)) != key_of(tmp_path, base_doc())


@pytest.mark.parametrize(("field", "value"), OTHER_FIELDS)
def test_a_field_that_does_not_change_the_engine_keeps_the_key(
    tmp_path: Path, field: str, value: object
) -> None:
    assert key_of(tmp_path, changed(base_doc(), field, value)) == key_of(tmp_path, base_doc())


def test_the_plan_changes_the_key(tmp_path: Path) -> None:
    base = key_of(tmp_path, base_doc())
    assert key_of(tmp_path, base_doc(), fixed_plan(gpu="L40S")) != base
    assert key_of(tmp_path, base_doc(), fixed_plan(max_batch_size=17)) != base
    assert key_of(tmp_path, base_doc(), fixed_plan(replicas=7)) == base


def test_engine_version_is_the_cache_key_and_uses_the_real_planner(tmp_path: Path) -> None:
    bp = write_blueprint(tmp_path, base_doc())
    spec, key = resolve(bp, "prod")  # the capacity planner, offline
    assert key == engine_key(spec) == engine_version(bp) and len(key) == 16


def test_local_target_has_no_engine(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is local"):
        engine_version(write_blueprint(tmp_path, base_doc()), "local", fixed_plan())
