"""The production Triton model repository, rendered strictly from ``engines/trtllm/``.

Templates use the TensorRT-LLM backend's own ``${name}`` placeholders (so anyone who knows
``fill_template.py`` can read them). Rendering is strict, because a wrong value here shows up only
when Triton loads the model on a GPU node, far from the cause:

* every placeholder must have a value, or a ``BuildError`` names the file and the placeholders;
* every rendered ``config.pbtxt`` must parse into Triton's ``ModelConfig`` (tritonclient's
  generated classes);
* the ensemble must expose exactly the tensors of docs/CONTRACTS.md, and its wiring must hold:
  every step's inputs come from the request or an earlier step, every tensor is used with the type
  its producer declares, every ensemble output is produced;
* the values must agree with the engine's own ``config.json`` (max batch size, beam width, input
  and sequence lengths, dtype, parallelism), or a named error says which and where.

Paths inside the configs are the paths Triton sees (``RuntimePaths``): the local cache on a GPU
machine, or the model store's mount point in a pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmctl.assets import asset_dir
from llmctl.engine.spec import BuildSpec
from llmctl.errors import BuildError
from llmctl.local.repository import pbtxt_string

ENV_TEMPLATES = "LLMCTL_TRTLLM_TEMPLATES"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
TEMPLATE_SUFFIX = ".tmpl"
LLM_MODELS = ("preprocessing", "tensorrt_llm", "postprocessing", "ensemble")
REPO_FORMAT = 1

# docs/CONTRACTS.md: the tensors of the "ensemble" model on every target (dims without batch).
CONTRACT_INPUTS: dict[str, tuple[str, tuple[int, ...], bool]] = {
    "text_input": ("TYPE_STRING", (1,), False),
    "max_tokens": ("TYPE_INT32", (1,), False),
    "temperature": ("TYPE_FP32", (1,), True),
    "top_k": ("TYPE_INT32", (1,), True),
    "top_p": ("TYPE_FP32", (1,), True),
    "stop_words": ("TYPE_STRING", (-1,), True),
    "bad_words": ("TYPE_STRING", (-1,), True),
    "end_id": ("TYPE_INT32", (1,), True),
    "pad_id": ("TYPE_INT32", (1,), True),
    "random_seed": ("TYPE_UINT64", (1,), True),
    "stream": ("TYPE_BOOL", (1,), True),
    "repetition_penalty": ("TYPE_FP32", (1,), True),
    "presence_penalty": ("TYPE_FP32", (1,), True),
    "frequency_penalty": ("TYPE_FP32", (1,), True),
    "min_length": ("TYPE_INT32", (1,), True),
    "beam_width": ("TYPE_INT32", (1,), True),
    "return_log_probs": ("TYPE_BOOL", (1,), True),
}
CONTRACT_OUTPUTS: dict[str, tuple[str, tuple[int, ...]]] = {"text_output": ("TYPE_STRING", (-1,))}
EMBEDDER_MAX_BATCH = 64


def templates_root() -> Path:
    override = os.environ.get(ENV_TEMPLATES)
    if override:
        return Path(override)
    return asset_dir("engines") / "trtllm"


def embedder_code() -> Path:
    """The embedder's python model: the local target's file, so both targets run the same code."""
    return asset_dir("engines") / "local" / "embedder" / "model.py"


# -- filling and parsing -----------------------------------------------------------------------
def fill(template: str, values: Mapping[str, Any], source: str) -> str:
    """Replace every ``${name}``; a placeholder without a value is a named error."""
    missing = sorted({m.group(1) for m in PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        names = ", ".join("${" + n + "}" for n in missing)
        raise BuildError(f"{source}: no value for placeholder(s) {names}")
    out = PLACEHOLDER.sub(lambda m: pbtxt_string(str(values[m.group(1)])), template)
    if "${" in out:
        line = next(ln for ln in out.splitlines() if "${" in ln)
        raise BuildError(f"{source}: malformed placeholder left after rendering: {line.strip()}")
    return out


def parse_config(text: str, source: str) -> Any:
    """Parse a config.pbtxt into Triton's ModelConfig message (tritonclient's generated class)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise BuildError(
            "checking config.pbtxt needs tritonclient: pip install 'tritonclient[grpc]'"
        ) from None
    msg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise BuildError(f"{source}: not a valid Triton ModelConfig: {exc}") from None
    return msg


def dtype_name(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(value)


def _dims_compatible(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))


# -- checks ------------------------------------------------------------------------------------
def check_contract(ensemble: Any, source: str) -> None:
    """The ensemble exposes exactly the contract's tensors, with the contract's types and dims."""
    got_in = {t.name: (dtype_name(t.data_type), tuple(t.dims), t.optional) for t in ensemble.input}
    got_out = {t.name: (dtype_name(t.data_type), tuple(t.dims)) for t in ensemble.output}
    problems: list[str] = []
    for name in sorted(set(CONTRACT_INPUTS) - set(got_in)):
        problems.append(f"input {name} missing")
    for name in sorted(set(got_in) - set(CONTRACT_INPUTS)):
        problems.append(f"input {name} is not in the contract")
    for name in sorted(set(CONTRACT_INPUTS) & set(got_in)):
        if got_in[name] != CONTRACT_INPUTS[name]:
            problems.append(
                f"input {name} is {got_in[name]}, the contract says {CONTRACT_INPUTS[name]}"
            )
    if got_out != CONTRACT_OUTPUTS:
        problems.append(
            f"outputs are {sorted(got_out)}, the contract says {sorted(CONTRACT_OUTPUTS)}"
        )
    if ensemble.name != "ensemble" or ensemble.max_batch_size <= 0:
        problems.append("the model must be named 'ensemble' with max_batch_size > 0")
    if problems:
        raise BuildError(f"{source}: breaks docs/CONTRACTS.md: " + "; ".join(problems))


def check_ensemble(configs: Mapping[str, Any], source: str) -> None:
    """Wiring: every step input is available and typed as produced; every output is produced."""
    ens = configs["ensemble"]
    available: dict[str, tuple[str, tuple[int, ...], str]] = {
        t.name: (dtype_name(t.data_type), tuple(t.dims), "the request") for t in ens.input
    }
    used: set[str] = set()
    problems: list[str] = []
    for i, step in enumerate(ens.ensemble_scheduling.step):
        model = configs.get(step.model_name)
        where = f"step {i} ({step.model_name})"
        if model is None:
            problems.append(f"{where}: no model {step.model_name!r} in the repository")
            continue
        inputs = {t.name: t for t in model.input}
        for key, tensor in step.input_map.items():
            if key not in inputs:
                problems.append(f"{where}: {step.model_name} has no input {key!r}")
                continue
            if tensor not in available:
                problems.append(
                    f"{where}: input {key} <- {tensor!r}, which neither the request nor an earlier step provides"
                )
                continue
            used.add(tensor)
            dtype, dims, origin = available[tensor]
            want = (dtype_name(inputs[key].data_type), tuple(inputs[key].dims))
            if dtype != want[0] or not _dims_compatible(dims, want[1]):
                problems.append(
                    f"{where}: input {key} wants {want[0]} {list(want[1])}, {tensor!r} from {origin} is {dtype} {list(dims)}"
                )
        for name, t in inputs.items():
            if not t.optional and name not in step.input_map:
                problems.append(f"{where}: required input {name} is not mapped")
        outputs = {t.name: t for t in model.output}
        for key, tensor in step.output_map.items():
            if key not in outputs:
                problems.append(f"{where}: {step.model_name} has no output {key!r}")
                continue
            if tensor in available:
                problems.append(f"{where}: tensor {tensor!r} is produced twice")
            available[tensor] = (
                dtype_name(outputs[key].data_type),
                tuple(outputs[key].dims),
                where,
            )
    for t in ens.output:
        if t.name not in available:
            problems.append(f"ensemble output {t.name} is produced by no step")
        else:
            dtype, dims, origin = available[t.name]
            if dtype != dtype_name(t.data_type) or not _dims_compatible(dims, tuple(t.dims)):
                problems.append(
                    f"ensemble output {t.name} is {dtype_name(t.data_type)} {list(t.dims)}, {origin} makes {dtype} {list(dims)}"
                )
    for t in ens.input:
        if t.name not in used:
            problems.append(f"ensemble input {t.name} reaches no step")
    for name in LLM_MODELS[:3]:
        if configs[name].max_batch_size != ens.max_batch_size:
            problems.append(
                f"{name} max_batch_size {configs[name].max_batch_size} differs from the ensemble's {ens.max_batch_size}"
            )
    if problems:
        raise BuildError(f"{source}: ensemble wiring: " + "; ".join(problems))


ENGINE_DTYPES = {"bfloat16": "bfloat16", "float16": "float16"}


def cross_check(
    configs: Mapping[str, Any], engine_config: Mapping[str, Any], spec: BuildSpec, source: str
) -> None:
    """The rendered configs and the spec agree with the engine's own config.json."""
    build = engine_config.get("build_config") or {}
    pretrained = engine_config.get("pretrained_config") or {}
    mapping = pretrained.get("mapping") or {}
    trt = configs["tensorrt_llm"]
    params = {k: v.string_value for k, v in trt.parameters.items()}
    pre = {k: v.string_value for k, v in configs["preprocessing"].parameters.items()}
    checks = [
        (
            "max_batch_size",
            "tensorrt_llm max_batch_size",
            trt.max_batch_size,
            build.get("max_batch_size"),
        ),
        (
            "max_beam_width",
            "tensorrt_llm parameter max_beam_width",
            int(params.get("max_beam_width", 0)),
            build.get("max_beam_width"),
        ),
        (
            "max_input_len",
            "preprocessing parameter max_input_len",
            int(pre.get("max_input_len", 0)),
            build.get("max_input_len"),
        ),
        (
            "max_seq_len",
            "preprocessing parameter max_seq_len",
            int(pre.get("max_seq_len", 0)),
            build.get("max_seq_len"),
        ),
        (
            "dtype",
            "tensorrt_llm parameter llmctl_engine_dtype",
            params.get("llmctl_engine_dtype"),
            pretrained.get("dtype"),
        ),
        ("tp_size", "build spec tp", spec.tp, mapping.get("tp_size", 1)),
        ("pp_size", "build spec pp", spec.pp, mapping.get("pp_size", 1)),
    ]
    problems = [
        f"{what} is {ours!r} but the engine's config.json has {field_}={theirs!r}"
        for field_, what, ours, theirs in checks
        if theirs is not None and ours != theirs
    ]
    missing = [field_ for field_, _, _, theirs in checks[:5] if theirs is None]
    if missing:
        problems.append(f"the engine's config.json lacks {', '.join(missing)}")
    if problems:
        raise BuildError(f"{source}: does not match the engine: " + "; ".join(problems))


# -- the repository ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimePaths:
    """Where Triton finds things (paths inside the serving container or on the GPU machine)."""

    engine_dir: str
    tokenizer_dir: str
    embedder_model_dir: str | None = None


@dataclass(frozen=True)
class EmbedderSettings:
    dimensions: int = 384
    encode_batch_size: int = 64
    max_queue_delay_us: int = 5000
    instance_count: int = 1
    n_threads: int = 4
    max_seq_length: int = 0


@dataclass(frozen=True)
class RenderedRepository:
    path: Path
    key: str
    models: tuple[str, ...]
    cross_checked: bool  # False: no engine config.json was at hand (checked against the spec only)
    built: bool
    configs: Mapping[str, Any] = field(repr=False, default_factory=dict)


def embedder_values(embedder: EmbedderSettings, model_dir: str) -> dict[str, Any]:
    """The embedder's template values: the same model on both production backends."""
    return {
        "max_batch_size": EMBEDDER_MAX_BATCH,
        "max_queue_delay_us": embedder.max_queue_delay_us,
        "dimensions": embedder.dimensions,
        "model_path": model_dir,
        "instance_count": embedder.instance_count,
        "n_threads": embedder.n_threads,
        "encode_batch_size": embedder.encode_batch_size,
        "max_seq_length": embedder.max_seq_length,
    }


def llm_values(
    spec: BuildSpec, engine_key: str, paths: RuntimePaths, kv_fraction: float
) -> dict[str, Any]:
    return {
        "triton_max_batch_size": spec.max_batch_size,
        "decoupled_mode": "true",
        "max_queue_delay_microseconds": 100,
        "max_beam_width": spec.max_beam_width,
        "batching_strategy": "inflight_fused_batching",
        "engine_dir": paths.engine_dir,
        "tokenizer_dir": paths.tokenizer_dir,
        "batch_scheduler_policy": "guaranteed_no_evict",
        "kv_cache_free_gpu_mem_fraction": kv_fraction,
        "enable_chunked_context": "true" if spec.plugins.use_paged_context_fmha else "false",
        "engine_version": engine_key,
        "engine_dtype": spec.dtype,
        "preprocessing_instance_count": 2,
        "postprocessing_instance_count": 2,
        "add_special_tokens": "true",
        "skip_special_tokens": "true",
        "max_input_len": spec.max_input_len,
        "max_seq_len": spec.max_seq_len,
    }


def spec_engine_config(spec: BuildSpec) -> dict[str, Any]:
    """What the engine's config.json will say, for cross-checking before the engine exists."""
    return {
        "pretrained_config": {
            "dtype": spec.dtype,
            "mapping": {"tp_size": spec.tp, "pp_size": spec.pp},
        },
        "build_config": {
            "max_batch_size": spec.max_batch_size,
            "max_beam_width": spec.max_beam_width,
            "max_input_len": spec.max_input_len,
            "max_seq_len": spec.max_seq_len,
            "max_num_tokens": spec.max_num_tokens,
        },
    }


def render_repository(
    spec: BuildSpec,
    engine_key: str,
    out_root: Path,
    paths: RuntimePaths,
    *,
    kv_fraction: float,
    engine_config: Mapping[str, Any] | None = None,
    embedder: EmbedderSettings | None = None,
    templates: Path | None = None,
) -> RenderedRepository:
    """Render, parse and check every model, then place the repository at ``out_root/<key>``."""
    tdir = templates or templates_root()
    if not tdir.is_dir():
        raise BuildError(f"model templates not found: {tdir}")
    values = llm_values(spec, engine_key, paths, kv_fraction)
    models: dict[str, dict[str, Any]] = dict.fromkeys(LLM_MODELS, values)
    if embedder is not None:
        if not paths.embedder_model_dir:
            raise BuildError("the embedder needs RuntimePaths.embedder_model_dir")
        models["embedder"] = embedder_values(embedder, paths.embedder_model_dir)
    rendered: dict[str, dict[str, str]] = {}
    copies: dict[str, dict[str, Path]] = {}
    configs: dict[str, Any] = {}
    for name, vals in models.items():
        mdir = tdir / name
        tmpl = mdir / f"config.pbtxt{TEMPLATE_SUFFIX}"
        if not tmpl.is_file():
            raise BuildError(f"{tmpl}: template missing")
        text = fill(tmpl.read_text(), vals, str(tmpl))
        configs[name] = parse_config(text, str(tmpl))
        rendered[name] = {"config.pbtxt": text}
        code = embedder_code() if name == "embedder" else mdir / "model.py"
        copies[name] = {"1/model.py": code} if code.is_file() else {}
    check_contract(configs["ensemble"], str(tdir / "ensemble"))
    check_ensemble(configs, str(tdir / "ensemble"))
    cross_check(
        configs, engine_config or spec_engine_config(spec), spec, str(tdir / "tensorrt_llm")
    )

    h = hashlib.sha256(f"{REPO_FORMAT}\0{engine_key}\n".encode())
    for name in sorted(rendered):
        h.update(f"{name}/config.pbtxt\0{rendered[name]['config.pbtxt']}\n".encode())
        for rel, src in sorted(copies[name].items()):
            h.update(f"{name}/{rel}\0".encode() + src.read_bytes() + b"\n")
    key = h.hexdigest()[:16]
    files: dict[str, bytes] = {}
    for name in models:
        files[f"{name}/config.pbtxt"] = rendered[name]["config.pbtxt"].encode()
        for rel, src in copies[name].items():
            files[f"{name}/{rel}"] = src.read_bytes()
    manifest = {
        "format": REPO_FORMAT,
        "key": key,
        "engine_version": engine_key,
        "models": sorted(models),
        "paths": {
            "engine_dir": paths.engine_dir,
            "tokenizer_dir": paths.tokenizer_dir,
            "embedder_model_dir": paths.embedder_model_dir,
        },
        "cross_checked_against_engine": engine_config is not None,
    }
    final, built = place_repository(out_root, key, tuple(models), files, manifest)
    return RenderedRepository(final, key, tuple(models), engine_config is not None, built, configs)


def place_repository(
    out_root: Path,
    key: str,
    models: tuple[str, ...],
    files: Mapping[str, bytes],
    manifest: Mapping[str, Any],
) -> tuple[Path, bool]:
    """Write a rendered repository to ``out_root/<key>`` atomically (a temporary folder renamed
    into place; ``manifest.json`` last). Content-addressed: an existing one is kept as is.
    Returns the folder and whether it was written now."""
    final = out_root / key
    if (final / "manifest.json").is_file():
        return final, False
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".render-{key}-", dir=out_root))
    try:
        for name in models:
            (tmp / name / "1").mkdir(parents=True)  # Triton needs a version folder, even when empty
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps(dict(manifest), indent=2, sort_keys=True))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return final, False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, True
