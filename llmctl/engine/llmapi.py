"""TensorRT-LLM's PyTorch backend (the default, ``engine.backend: pytorch``): the model artifact.

Since TensorRT-LLM removed its TensorRT engine backend (after 1.3.0rc20; migration guide "TensorRT
Backend Removed"), a production model is a Hugging Face or ModelOpt checkpoint that the LLM API
loads directly, plus the LLM-API configuration Triton's LLM-API model reads from its
``model.yaml``. There is no conversion and no engine build. What llmctl builds is therefore a
content-addressed *artifact*:

* the pinned checkpoint: a Hugging Face commit (fetched into the model store's HF cache and loaded
  from there with ``HF_HUB_OFFLINE=1``), or a local folder, copied in and identified by its hash;
* a quantisation step where the plan's precision needs one and the checkpoint is not already
  quantised: ModelOpt post-training quantisation to FP8 (Ada, Hopper, Blackwell), NVFP4 (Blackwell)
  or INT4-AWQ, exported as a unified Hugging Face checkpoint (``hf_quant_config.json``) that the
  PyTorch backend reads as is;
* the LLM-API configuration derived from the capacity plan (``llm_api_config``): tensor, pipeline
  and expert parallel sizes, max_batch_size, max_num_tokens, max_seq_len,
  ``kv_cache_config.free_gpu_memory_fraction`` and its dtype, chunked prefill, CUDA-graph batch
  sizes;
* the tokenizer.

Its key hashes the checkpoint identity, that configuration, the TensorRT-LLM release (from the
Triton image's tag) and the GPU architecture (ModelOpt's quantised kernels are chosen per SM), so a
changed plan is a new artifact and an unchanged one is never rebuilt. The commands are in
``steps`` (the dry run prints them; ``llmctl.engine.job`` runs them in a Job); the builder runs them
on a GPU machine with TensorRT-LLM installed. ``llmctl.engine.trtllm`` is the legacy engine path.
"""

from __future__ import annotations

import json
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.engine.spec import (
    FP8_ARCHS,
    Checkpoint,
    gpu_arch,
    resolve_checkpoint,
    trtllm_release,
)
from llmctl.engine.trtllm import SCRIPT_LABELS, Step, available, run_step
from llmctl.errors import BuildError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

FORMAT_VERSION = 1
# What the PyTorch backend quantises to, and the ModelOpt --qformat for each.
QFORMATS = {"fp8": "fp8", "nvfp4": "nvfp4", "int4_awq": "int4_awq"}
BLACKWELL = "sm100"
# The plan's precision -> the quantisation that produces it ("none" keeps the checkpoint's dtype).
QUANT_FOR_PRECISION = {"fp8": "fp8", "fp4": "nvfp4", "nvfp4": "nvfp4", "int4_awq": "int4_awq"}
PREQUANTISED_SUFFIXES = {"-fp8": "fp8", "-fp4": "nvfp4", "-nvfp4": "nvfp4", "-awq": "int4_awq"}
# NVIDIA's pre-quantised checkpoints (ModelOpt, on the Hugging Face hub) for common base models:
# suggested in the notes, never substituted silently (their revision must be pinned like any other).
NVIDIA_CHECKPOINTS = {
    ("meta-llama/Llama-3.1-8B-Instruct", "fp8"): "nvidia/Llama-3.1-8B-Instruct-FP8",
    ("meta-llama/Llama-3.1-70B-Instruct", "fp8"): "nvidia/Llama-3.1-70B-Instruct-FP8",
    ("meta-llama/Llama-3.3-70B-Instruct", "fp8"): "nvidia/Llama-3.3-70B-Instruct-FP8",
    ("meta-llama/Llama-3.3-70B-Instruct", "nvfp4"): "nvidia/Llama-3.3-70B-Instruct-FP4",
}
DEFAULT_MAX_NUM_TOKENS = 8192  # the LLM API's default token budget of one scheduler step
CALIB_SIZE = 512
VALIDATE_TOKENS = 8
# ModelOpt's PTQ example (NVIDIA/Model-Optimizer examples/hf_ptq, formerly examples/llm_ptq); the
# serving images carry the modelopt package but not its examples, so the Job mounts or clones them.
MODELOPT_PTQ = "/opt/Model-Optimizer/examples/hf_ptq/hf_ptq.py"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "generation_config.json",
    "config.json",
    "chat_template.jinja",
)

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class ArtifactSpec:
    """Everything that decides the PyTorch-backend artifact, derived from blueprint and plan."""

    model_id: str
    checkpoint: Checkpoint
    quantization: str  # "none" | "fp8" | "nvfp4" | "int4_awq": the step llmctl runs
    prequantised: str | None  # the checkpoint's own quantisation when it ships quantised
    kv_cache_dtype: str  # "auto" (the checkpoint's dtype) | "fp8"
    tp: int
    pp: int
    ep: int
    max_batch_size: int
    max_num_tokens: int
    max_seq_len: int
    kv_cache_free_gpu_memory_fraction: float
    enable_chunked_prefill: bool
    cuda_graph_batch_sizes: tuple[int, ...]
    gpu: str
    gpu_arch: str
    tensorrt_llm: str  # the release in the serving image ("image:<ref>" when the tag is unknown)
    triton_image: str
    backend: str = "pytorch"
    notes: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    def identity(self) -> dict[str, Any]:
        """What the key hashes: checkpoint, configuration, release and GPU architecture."""
        return {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "checkpoint": self.checkpoint.identity(),
            "quantization": self.quantization,
            "llm_api": self.llm_api_config("<checkpoint>"),
            "tensorrt_llm": self.tensorrt_llm,
            "gpu_arch": self.gpu_arch,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checkpoint"] = asdict(self.checkpoint)
        d["notes"] = list(self.notes)
        d["world_size"] = self.world_size
        return d

    def llm_api_config(self, model: str, tokenizer: str | None = None) -> dict[str, Any]:
        """The LLM API's arguments (the LLM-API model's ``model.yaml`` without ``triton_config``).

        Keys as in ``tensorrt_llm/llmapi/llm_args.py`` of current releases.
        """
        cfg: dict[str, Any] = {"model": model, "backend": "pytorch"}
        if self.checkpoint.source == "hf" and self.quantization == "none":
            cfg["revision"] = self.checkpoint.revision
        if tokenizer:
            cfg["tokenizer"] = tokenizer
        cfg |= {
            "tensor_parallel_size": self.tp,
            "pipeline_parallel_size": self.pp,
            "moe_expert_parallel_size": self.ep,
            "max_batch_size": self.max_batch_size,
            "max_num_tokens": self.max_num_tokens,
            "max_seq_len": self.max_seq_len,
            "enable_chunked_prefill": self.enable_chunked_prefill,
            "kv_cache_config": {
                "free_gpu_memory_fraction": self.kv_cache_free_gpu_memory_fraction,
                "dtype": self.kv_cache_dtype,
            },
            "cuda_graph_config": {
                "batch_sizes": list(self.cuda_graph_batch_sizes),
                "enable_padding": True,
            },
        }
        return cfg


def prequantised(model_id: str, folder: Path | None) -> str | None:
    """The quantisation a checkpoint already carries (ModelOpt's ``hf_quant_config.json`` in a
    local folder, or NVIDIA's naming on the hub), None for a plain checkpoint."""
    if folder is not None and (folder / "hf_quant_config.json").is_file():
        try:
            doc = json.loads((folder / "hf_quant_config.json").read_text())
            algo = str(doc.get("quantization", {}).get("quant_algo", "")).lower()
        except (OSError, ValueError, AttributeError):
            algo = ""
        return {"fp8": "fp8", "nvfp4": "nvfp4", "w4a16_awq": "int4_awq"}.get(algo, algo or "fp8")
    name = model_id.rstrip("/").lower()
    return next((q for suffix, q in PREQUANTISED_SUFFIXES.items() if name.endswith(suffix)), None)


def cuda_graph_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to the batch size, and the batch size itself: the decode batches CUDA
    graphs are captured for (padding covers the sizes between)."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    if max_batch_size > sizes[-1]:
        sizes.append(max_batch_size)
    return tuple(sizes)


def _auto(value: Any) -> bool:
    return value in (None, "auto")


def derive_artifact(bp: Blueprint, plan: Any, checkpoint: Checkpoint | None = None) -> ArtifactSpec:
    """The artifact for a blueprint and its capacity plan; explicit engine settings win over the
    plan, and impossible combinations (NVFP4 before Blackwell) fail here, not on a GPU node."""
    notes: list[str] = []
    checkpoint = checkpoint or resolve_checkpoint(bp)
    arch = gpu_arch(plan.gpu)
    folder = Path(checkpoint.ref) if checkpoint.source == "local" else None
    already = prequantised(bp.model.id, folder)
    quant = bp.engine.quantization
    plan_precision = str(plan.precision)
    if _auto(quant):
        quant = QUANT_FOR_PRECISION.get(plan_precision, "none")
        notes.append(f"quantisation {quant} from the capacity plan (precision {plan_precision})")
    if quant == "int8_wo":
        raise BuildError(
            "engine.quantization int8_wo is a TensorRT-engine format; with engine.backend pytorch "
            "use fp8, nvfp4 or int4_awq"
        )
    if quant != "none" and quant not in QFORMATS:
        raise BuildError(f"engine.quantization {quant!r}: expected none, {', '.join(QFORMATS)}")
    if quant == "fp8" and arch not in FP8_ARCHS:
        raise BuildError(
            f"fp8 needs an Ada, Hopper or Blackwell GPU (sm89+); {plan.gpu} is {arch}: choose bf16"
        )
    if quant == "nvfp4" and arch != BLACKWELL:
        raise BuildError(
            f"nvfp4 needs a Blackwell GPU (sm100); {plan.gpu} is {arch}: choose fp8 or bf16"
        )
    if already is not None:
        if quant not in ("none", already):
            notes.append(
                f"{bp.model.id} is already {already}; serving it as is (plan said {quant})"
            )
        else:
            notes.append(f"{bp.model.id} is already quantised ({already}); no quantisation step")
        quant = "none"
    elif quant != "none" and (bp.model.id, quant) in NVIDIA_CHECKPOINTS:
        suggestion = NVIDIA_CHECKPOINTS[(bp.model.id, quant)]
        notes.append(
            f"NVIDIA publishes {suggestion}: set model.id to it (with a pinned revision) to skip "
            "the quantisation step"
        )
    effective = already or quant
    tp = bp.engine.tensor_parallel if not _auto(bp.engine.tensor_parallel) else int(plan.tp)
    pp = int(bp.engine.pipeline_parallel or 1)
    ep = int(getattr(plan, "ep", 1) or 1)
    mbs = bp.engine.max_batch_size if not _auto(bp.engine.max_batch_size) else plan.max_batch_size
    if int(mbs) < 1:
        raise BuildError(f"max batch size {mbs} from the capacity plan: expected at least 1")
    max_input = int(bp.model.max_input_tokens)
    max_seq = max_input + int(bp.model.max_output_tokens)
    return ArtifactSpec(
        model_id=bp.model.id,
        checkpoint=checkpoint,
        quantization=quant,
        prequantised=already,
        kv_cache_dtype="fp8" if effective in ("fp8", "nvfp4") else "auto",
        tp=int(tp),
        pp=pp,
        ep=ep,
        max_batch_size=int(mbs),
        # chunked prefill splits long prompts, so one step need not hold a whole prompt
        max_num_tokens=min(DEFAULT_MAX_NUM_TOKENS, int(mbs) * max_seq),
        max_seq_len=max_seq,
        kv_cache_free_gpu_memory_fraction=float(bp.engine.kv_cache_free_gpu_mem_fraction),
        enable_chunked_prefill=True,
        cuda_graph_batch_sizes=cuda_graph_sizes(int(mbs)),
        gpu=str(plan.gpu),
        gpu_arch=arch,
        tensorrt_llm=trtllm_release(bp.engine.triton_image),
        triton_image=bp.engine.triton_image,
        notes=tuple(notes),
    )


def artifact_key(spec: ArtifactSpec) -> str:
    """16 hex characters of sha256 over ``spec.identity()`` (fits a Kubernetes label)."""
    import hashlib

    from llmctl.blueprint.model import canonical_json

    return hashlib.sha256(canonical_json(spec.identity()).encode()).hexdigest()[:16]


# -- the commands ------------------------------------------------------------------------------
WRITE_CONFIG_SCRIPT = textwrap.dedent(
    """
    import json, sys
    path, doc = sys.argv[1], json.loads(sys.argv[2])
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
    """
)
VALIDATE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from tensorrt_llm import LLM, SamplingParams
    cfg, n = json.load(open(sys.argv[1])), int(sys.argv[2])
    cfg.pop("backend", None)
    for key in ("kv_cache_config", "cuda_graph_config"):
        cfg.pop(key, None)  # defaults are enough to prove the checkpoint loads and generates
    llm = LLM(**cfg)
    out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=n))
    text = out[0].outputs[0].text
    print("llmctl-validate: generated", len(out[0].outputs[0].token_ids), "tokens:", repr(text))
    llm.shutdown()
    if not out[0].outputs[0].token_ids:
        sys.exit("no tokens generated")
    """
)
SCRIPT_LABELS.update(
    {
        WRITE_CONFIG_SCRIPT: "<write the LLM-API configuration>",
        VALIDATE_SCRIPT: "<llmctl LLM-API validation script>",
    }
)


def steps(
    spec: ArtifactSpec, out_dir: str, *, checkpoint_dir: str | None = None, python: str = "python3"
) -> list[Step]:
    """The exact commands that produce the artifact in ``out_dir`` (no trtllm-build anywhere).

    A Hugging Face checkpoint served as is goes into the HF cache ``HF_HOME`` names (the model
    store's, where the pods read it offline); one to be quantised is fetched to
    ``checkpoint_dir`` (default ``<out_dir>.hf``) and only the quantised result is kept.
    """
    out: list[Step] = []
    ck = spec.checkpoint
    src = shlex.quote(ck.ref)  # the folder tokenizer files are copied from, as a shell word
    model_path = ck.ref
    if ck.source == "hf":
        fetch = ["huggingface-cli", "download", ck.ref, "--revision", str(ck.revision)]
        if spec.quantization != "none":
            local = checkpoint_dir or f"{out_dir}.hf"
            fetch += ["--local-dir", local]
            src = model_path = local
            where = "into the build folder (quantised below)"
        else:
            src = f'"$({shlex.join([*fetch, "--quiet"])})"'  # prints the snapshot's folder
            where = "into the model store's HF cache, where the pods load it offline"
        out.append(
            Step("download", tuple(fetch), f"fetch {ck.ref}@{str(ck.revision)[:12]} {where}")
        )
    if spec.quantization != "none":
        model_path = f"{out_dir}/checkpoint"
        argv = [python, MODELOPT_PTQ, "--pyt_ckpt_path", str(src), "--qformat"]
        argv += [QFORMATS[spec.quantization], "--export_path", model_path]
        argv += ["--calib_size", str(CALIB_SIZE), "--inference_tensor_parallel", str(spec.tp)]
        if spec.kv_cache_dtype == "fp8":
            argv += ["--kv_cache_qformat", "fp8"]
        out.append(
            Step(
                "quantize",
                tuple(argv),
                f"ModelOpt post-training quantisation to {spec.quantization} "
                f"({CALIB_SIZE} calibration samples), exported as a Hugging Face checkpoint",
            )
        )
    elif ck.source == "local":
        model_path = f"{out_dir}/checkpoint"
        out.append(
            Step("copy", ("cp", "-r", "--", ck.ref, model_path), "copy the local checkpoint in")
        )
    tok = shlex.quote(f"{out_dir}/tokenizer")
    names = " ".join(TOKENIZER_FILES)
    if not src.startswith('"$('):
        src = shlex.quote(src)
    script = (
        f"src={src}; mkdir -p {tok} && for f in {names}; do "
        f'[ -f "$src/$f" ] && cp "$src/$f" {tok}/; done; [ -f {tok}/tokenizer_config.json ]'
    )
    out.append(
        Step(
            "tokenizer",
            ("sh", "-c", script),
            "copy the tokenizer (the gateway sizes prompts with it)",
        )
    )
    config = spec.llm_api_config(model_path, f"{out_dir}/tokenizer")
    out.append(
        Step(
            "configure",
            (python, "-c", WRITE_CONFIG_SCRIPT, f"{out_dir}/llm_api.json", json.dumps(config)),
            "write the LLM-API configuration derived from the capacity plan (llm_api.json)",
        )
    )
    validate = (python, "-c", VALIDATE_SCRIPT, f"{out_dir}/llm_api.json", str(VALIDATE_TOKENS))
    out.append(
        Step(
            "validate",
            validate,
            f"load it with the LLM API (PyTorch backend, TP {spec.tp}) and generate "
            f"{VALIDATE_TOKENS} tokens",
        )
    )
    return out


def make_builder(spec: ArtifactSpec) -> Callable[[Path, ProgressFn], None]:
    """The cache's builder for this artifact: runs ``steps`` into the cache's temporary folder."""

    def build(out_dir: Path, on_progress: ProgressFn) -> None:
        log = out_dir / "build.log"
        work = out_dir.parent / f".{out_dir.name}-hf"
        for step in steps(spec, str(out_dir), checkpoint_dir=str(work)):
            run_step(step, log, on_progress)

    return build


def require_llm_api(spec: ArtifactSpec, where: str) -> None:
    """A one-line BuildError unless the LLM API of the serving release is importable here."""
    installed = available()
    if installed is None:
        raise BuildError(
            f"cannot build the model artifact: tensorrt_llm is not installed here (it needs an "
            f"NVIDIA GPU); {where}"
        )
    if not spec.tensorrt_llm.startswith("image:") and installed != spec.tensorrt_llm:
        raise BuildError(
            f"TensorRT-LLM {installed} is installed but {spec.triton_image} serves with "
            f"{spec.tensorrt_llm}: install {spec.tensorrt_llm} or build with --emit-job in the "
            "serving image"
        )
