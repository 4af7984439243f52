"""``build_production``: dry run, Job manifest, the no-GPU message, and a full build with the fake builder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from engine_fixtures import FakeBuilder, base_doc, changed, fixed_plan, write_blueprint

from llmctl.engine import build as B
from llmctl.engine import trtllm
from llmctl.engine.build import build_job_manifest
from llmctl.engine.cache import EngineCache
from llmctl.engine.spec import BuildSpec
from llmctl.errors import BuildError


@pytest.fixture
def bp(tmp_path: Path):
    return write_blueprint(tmp_path, base_doc())


def test_dry_run_prints_the_exact_steps_and_runs_nothing(bp, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    result = B.build_production(
        bp, "prod", dry_run=True, plan=fixed_plan(max_batch_size=32), cache=cache
    )
    assert result.dry_run and result.engine is None and not cache.root.exists()
    names = [s.name for s in result.steps]
    assert names == ["download", "convert", "build", "validate"]
    build = result.steps[2].shell()
    for flag in (
        "--max_batch_size 32",
        "--max_input_len 2048",
        "--max_seq_len 2560",
        "--max_num_tokens 8192",
        "--kv_cache_type paged",
        "--use_paged_context_fmha enable",
        "--context_fmha enable",
        "--remove_input_padding enable",
        "--multiple_profiles enable",
        "--gemm_plugin auto",
    ):
        assert flag in build
    assert "--dtype bfloat16 --tp_size 1 --pp_size 1" in result.steps[1].shell()
    assert result.to_dict()["engine_version"] == result.key


@pytest.mark.parametrize(
    ("plan", "engine", "expect"),
    [
        (
            fixed_plan(precision="fp8"),
            {},
            ["quantization/quantize.py", "--qformat fp8", "--kv_cache_dtype fp8"],
        ),
        (
            fixed_plan(),
            {"quantization": "int4_awq"},
            ["--qformat int4_awq", "--awq_block_size 128"],
        ),
        (
            fixed_plan(),
            {"quantization": "int8_wo"},
            ["convert_checkpoint.py", "--use_weight_only --weight_only_precision int8"],
        ),
        (fixed_plan(tp=2), {}, ["--tp_size 2"]),
    ],
)
def test_quantisation_chooses_the_tool(tmp_path: Path, plan, engine, expect) -> None:
    doc = base_doc()
    bp = write_blueprint(tmp_path, changed(doc, "engine", {**doc["engine"], **engine}))
    steps = B.build_production(
        bp, "prod", dry_run=True, plan=plan, cache=EngineCache(tmp_path / "e")
    ).steps
    text = "\n".join(s.shell() for s in steps)
    for piece in expect:
        assert piece in text
    if plan.tp == 2:
        assert steps[-1].argv[:3] == ("mpirun", "-n", "2")


def test_without_tensorrt_llm_the_error_names_both_ways_forward(
    bp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trtllm, "available", lambda: None)
    with pytest.raises(BuildError) as err:
        B.build_production(bp, "prod", plan=fixed_plan(), cache=EngineCache(tmp_path / "e"))
    msg = str(err.value)
    assert "\n" not in msg and "tensorrt_llm is not installed" in msg
    assert "GPU machine" in msg and "--emit-job" in msg


def test_a_tensorrt_llm_release_other_than_the_images_is_refused(
    bp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trtllm, "available", lambda: "0.9.0")
    with pytest.raises(BuildError, match="do not load across releases"):
        B.build_production(bp, "prod", plan=fixed_plan(), cache=EngineCache(tmp_path / "e"))


def test_build_with_the_fake_builder_then_hit(bp, tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "engines")
    plan = fixed_plan()
    spec, key = B.resolve(bp, "prod", plan)
    fake = FakeBuilder(spec)
    events: list[str] = []
    first = B.build_production(
        bp, "prod", plan=plan, cache=cache, builder=fake, progress=events.append
    )
    assert first.built and first.key == key == B.engine_version(bp, "prod", plan)
    assert first.repository is not None and first.repository.cross_checked
    assert (first.repository.path / "ensemble" / "config.pbtxt").is_file()
    assert not (first.repository.path / "embedder").exists()  # retrieval is off in this blueprint
    assert any("built" in e for e in events)
    second = B.build_production(bp, "prod", plan=plan, cache=cache, builder=fake)
    assert not second.built and fake.runs == 1
    assert second.repository is not None and second.repository.path == first.repository.path


def test_an_engine_that_disagrees_with_the_spec_is_refused(bp, tmp_path: Path) -> None:
    plan = fixed_plan()
    spec, _ = B.resolve(bp, "prod", plan)

    class WrongBatch(FakeBuilder):
        def engine_config(self):
            cfg = super().engine_config()
            cfg["build_config"]["max_batch_size"] = 4
            return cfg

    with pytest.raises(BuildError, match="max_batch_size"):
        B.build_production(
            bp, "prod", plan=plan, cache=EngineCache(tmp_path / "e"), builder=WrongBatch(spec)
        )


def test_retrieval_adds_the_embedder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmctl.local.spec as local_spec

    model_dir = tmp_path / "minilm"
    model_dir.mkdir()
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(local_spec, "resolve_embedding_model", lambda name, base=None: model_dir)
    doc = changed(
        base_doc(),
        "retrieval",
        {
            "enabled": True,
            "sources": [
                {
                    "name": "d",
                    "path": "docs",
                    "formats": ["markdown"],
                    "sensitivity": "internal",
                    "acl": ["all"],
                }
            ],
        },
    )
    doc = changed(doc, "requirements.citations", "required")
    bp = write_blueprint(tmp_path, doc)
    spec, _ = B.resolve(bp, "prod", fixed_plan())
    result = B.build_production(
        bp, "prod", plan=fixed_plan(), cache=EngineCache(tmp_path / "e"), builder=FakeBuilder(spec)
    )
    cfg = (result.repository.path / "embedder" / "config.pbtxt").read_text()
    assert f'string_value: "{model_dir}"' in cfg


def test_emit_job_writes_a_gpu_job_for_the_model_store(bp, tmp_path: Path) -> None:
    path = tmp_path / "out" / "job.yaml"
    plan = fixed_plan(tp=2)
    result = B.build_production(
        bp, "prod", emit_job=path, plan=plan, cache=EngineCache(tmp_path / "e")
    )
    job = yaml.safe_load(path.read_text())
    assert job == result.job == build_job_manifest(bp, "prod", plan)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "llm"
    assert job["metadata"]["labels"]["llmctl.dev/engine-version"] == result.key
    assert len(job["metadata"]["name"]) <= 63
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["restartPolicy"] == "Never"
    assert {"name": "model-store", "persistentVolumeClaim": {"claimName": "llm-engines"}} in pod[
        "volumes"
    ]
    (c,) = pod["containers"]
    assert c["image"] == bp.engine.triton_image
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    script = c["args"][0]
    assert f"/models/engines/{result.key}/manifest.json" in script  # built already: nothing to do
    assert "trtllm-build" in script and "--tp_size 2" in script and "mpirun -n 2" in script
    assert script.rstrip().splitlines()[-2].startswith("mv -T ")  # renamed into place last


def test_emit_job_needs_a_model_store(tmp_path: Path) -> None:
    doc = base_doc()
    del doc["targets"]["prod"]["storage"]
    bp = write_blueprint(tmp_path, doc)
    with pytest.raises(BuildError, match="no storage.modelStore"):
        build_job_manifest(bp, "prod", fixed_plan())


def test_spec_round_trips_to_dict(bp) -> None:
    spec, _ = B.resolve(bp, "prod", fixed_plan())
    assert isinstance(spec, BuildSpec)
    d = spec.to_dict()
    assert d["world_size"] == 1 and d["checkpoint"]["source"] == "hf"


def test_cli_shows_a_dry_run(bp, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmctl.cli.output import OutputFormat, emit

    result = B.build_production(
        bp, "prod", dry_run=True, plan=fixed_plan(), cache=EngineCache(tmp_path / "e")
    )
    emit(result, OutputFormat.text)
    out = capsys.readouterr().out
    assert f"engine {result.key}" in out and "steps (not run):" in out and "trtllm-build" in out
    emit(result, OutputFormat.json)
    assert '"engine_version"' in capsys.readouterr().out


def test_render_for_the_model_store_uses_the_mounted_paths(bp, tmp_path: Path) -> None:
    plan = fixed_plan()
    repo = B.render_for_model_store(bp, "prod", tmp_path / "repo", plan=plan)
    key = B.engine_version(bp, "prod", plan)
    cfg = (repo.path / "tensorrt_llm" / "config.pbtxt").read_text()
    assert f'"/models/engines/{key}/engine"' in cfg and not repo.cross_checked
