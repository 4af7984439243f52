"""The production model repository: strict placeholders, Triton's ModelConfig, the contract, the wiring."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from engine_fixtures import FakeBuilder, base_doc, fixed_plan, write_blueprint
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from llmctl.engine import render as R
from llmctl.engine.build import resolve
from llmctl.errors import BuildError

PATHS = R.RuntimePaths(
    "/models/engines/k/engine", "/models/engines/k/tokenizer", "/models/embedder"
)


@pytest.fixture
def spec(tmp_path: Path):
    return resolve(write_blueprint(tmp_path, base_doc()), "prod", fixed_plan(max_batch_size=24))[0]


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A private copy of engines/trtllm that a test may break."""
    dest = tmp_path / "templates"
    shutil.copytree(R.templates_root(), dest)
    return dest


def render(spec, tmp_path: Path, **kw):
    kw.setdefault("kv_fraction", 0.85)
    kw.setdefault("embedder", R.EmbedderSettings())
    return R.render_repository(spec, "abcdef0123456789", tmp_path / "repos", PATHS, **kw)


def parse(path: Path):
    msg = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), msg)
    return msg


def test_every_rendered_config_parses_into_triton_model_config(spec, tmp_path: Path) -> None:
    repo = render(spec, tmp_path, engine_config=FakeBuilder(spec).engine_config())
    assert repo.built and repo.cross_checked
    names = sorted(p.name for p in repo.path.iterdir() if p.is_dir())
    assert names == ["embedder", "ensemble", "postprocessing", "preprocessing", "tensorrt_llm"]
    configs = {n: parse(repo.path / n / "config.pbtxt") for n in names}
    for name, cfg in configs.items():
        assert cfg.name == name and (repo.path / name / "1").is_dir()
        assert "${" not in (repo.path / name / "config.pbtxt").read_text()
    trt = configs["tensorrt_llm"]
    params = {k: v.string_value for k, v in trt.parameters.items()}
    assert trt.backend == "tensorrtllm" and trt.max_batch_size == 24
    assert trt.model_transaction_policy.decoupled
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.85"
    assert params["gpt_model_path"] == PATHS.engine_dir and params["max_beam_width"] == "1"
    assert configs["ensemble"].platform == "ensemble"
    for n in ("preprocessing", "postprocessing"):
        assert configs[n].parameters["tokenizer_dir"].string_value == PATHS.tokenizer_dir
        assert (repo.path / n / "1" / "model.py").is_file()
    emb = configs["embedder"]
    assert emb.max_batch_size == 64 and [t.name for t in emb.input] == ["text"]
    assert [(t.name, list(t.dims)) for t in emb.output] == [("embedding", [384])]
    # rendering the same thing again is a no-op
    assert not render(spec, tmp_path, engine_config=FakeBuilder(spec).engine_config()).built


def test_ensemble_exposes_exactly_the_contract(spec, tmp_path: Path) -> None:
    ens = parse(render(spec, tmp_path).path / "ensemble" / "config.pbtxt")
    assert {t.name for t in ens.input} == set(R.CONTRACT_INPUTS)
    assert [t.name for t in ens.output] == ["text_output"]
    steps = [s.model_name for s in ens.ensemble_scheduling.step]
    assert steps == ["preprocessing", "tensorrt_llm", "postprocessing"]


def test_a_missing_placeholder_value_names_file_and_placeholder(
    spec, tmp_path: Path, templates: Path
) -> None:
    tmpl = templates / "tensorrt_llm" / "config.pbtxt.tmpl"
    tmpl.write_text(
        tmpl.read_text() + '\nparameters { key: "x" value: { string_value: "${no_such_value}" } }\n'
    )
    with pytest.raises(
        BuildError,
        match=r"tensorrt_llm/config\.pbtxt\.tmpl: no value for placeholder\(s\) \$\{no_such_value\}",
    ):
        render(spec, tmp_path, templates=templates)


def test_an_invalid_config_is_a_named_error(spec, tmp_path: Path, templates: Path) -> None:
    tmpl = templates / "postprocessing" / "config.pbtxt.tmpl"
    tmpl.write_text(tmpl.read_text().replace("max_batch_size:", "max_batch_sise:"))
    with pytest.raises(
        BuildError, match=r"postprocessing/config\.pbtxt\.tmpl: not a valid Triton ModelConfig"
    ):
        render(spec, tmp_path, templates=templates)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'input_map { key: "input_ids" value: "_INPUT_ID" }',
            'input_map { key: "input_ids" value: "_TYPO" }',
            "neither the request nor an earlier step",
        ),
        (
            'output_map { key: "INPUT_ID" value: "_INPUT_ID" }',
            "",
            "neither the request nor an earlier step",
        ),
        (
            'output_map { key: "OUTPUT" value: "text_output" }',
            "",
            "text_output is produced by no step",
        ),
        ('input_map { key: "runtime_top_k" value: "top_k" }', "", "top_k reaches no step"),
        (
            'input_map { key: "input_lengths" value: "_REQUEST_INPUT_LEN" }',
            "",
            "required input input_lengths is not mapped",
        ),
        (
            'value: "_SEQUENCE_LENGTH" }\n    }',
            'value: "_SEQUENCE_LENGTH" }\n      output_map { key: "cum_log_probs" value: "_SEQUENCE_LENGTH" }\n    }',
            "produced twice",
        ),
        (
            'input_map { key: "runtime_top_p" value: "top_p" }',
            'input_map { key: "runtime_top_p" value: "top_k" }',
            "wants TYPE_FP32",
        ),
        ('model_name: "postprocessing"', 'model_name: "detokenizer"', "no model 'detokenizer'"),
    ],
)
def test_broken_ensemble_wiring_is_caught(
    spec, tmp_path: Path, templates: Path, old: str, new: str, message: str
) -> None:
    tmpl = templates / "ensemble" / "config.pbtxt.tmpl"
    text = tmpl.read_text()
    assert old in text
    tmpl.write_text(text.replace(old, new, 1))
    with pytest.raises(BuildError, match=message):
        render(spec, tmp_path, templates=templates)


def test_a_tensor_outside_the_contract_is_refused(spec, tmp_path: Path, templates: Path) -> None:
    tmpl = templates / "ensemble" / "config.pbtxt.tmpl"
    tmpl.write_text(
        tmpl.read_text().replace(
            '{ name: "max_tokens" data_type: TYPE_INT32 dims: [ 1 ] },',
            '{ name: "max_tokens" data_type: TYPE_UINT32 dims: [ 1 ] },',
        )
    )
    with pytest.raises(BuildError, match="breaks docs/CONTRACTS.md: input max_tokens"):
        render(spec, tmp_path, templates=templates)


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("build_config", "max_batch_size", 8, "max_batch_size"),
        ("build_config", "max_input_len", 1024, "max_input_len"),
        ("build_config", "max_seq_len", 999, "max_seq_len"),
        ("build_config", "max_beam_width", 4, "max_beam_width"),
        ("pretrained_config", "dtype", "float16", "dtype"),
    ],
)
def test_values_are_cross_checked_against_the_engine(
    spec, tmp_path: Path, section: str, field: str, value: object, message: str
) -> None:
    engine = FakeBuilder(spec).engine_config()
    engine[section][field] = value
    with pytest.raises(BuildError, match=f"does not match the engine: .*{message}"):
        render(spec, tmp_path, engine_config=engine)


def test_engine_parallelism_is_cross_checked(spec, tmp_path: Path) -> None:
    engine = FakeBuilder(spec).engine_config()
    engine["pretrained_config"]["mapping"]["tp_size"] = 2
    with pytest.raises(BuildError, match="tp_size=2"):
        render(spec, tmp_path, engine_config=engine)


def test_fill_escapes_strings() -> None:
    assert R.fill('v: "${a}"', {"a": 'x"y'}, "t") == 'v: "x\\"y"'
