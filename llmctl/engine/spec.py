"""The TensorRT-LLM build specification: every choice that changes the engine, and nothing else.

A ``BuildSpec`` is derived from the blueprint and the capacity plan, never typed by hand, so the
engine is built for exactly the GPU, precision, TP and batch size the planner chose. Its
``identity()`` is what the cache key hashes: fields that do not change the engine (gate thresholds,
replicas, the KV-cache memory fraction, which is a runtime setting) stay out of it on purpose, so
tuning them never triggers a rebuild.

Checkpoint identity (documented here because ``engine_version`` depends on it):

* a Hugging Face id pinned to a 40-hex commit is identified by (id, commit). A git commit already
  commits to every file's content (LFS pointers carry each weight file's sha256), so the pair is a
  content address, and it is known without downloading anything; the key is therefore the same on
  a laptop that never saw the weights and on the GPU machine that built the engine. The sha256 of
  every downloaded file is still recorded in the engine's manifest.
* a branch or tag ("main") is not pinned: it is resolved through the local huggingface-hub cache
  (offline) to the commit it pointed at, or the build fails and says how to pin it.
* a local directory is identified by the sha256 of its files (names and contents).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import BuildError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

FORMAT_VERSION = 1
COMMIT = re.compile(r"^[0-9a-f]{40}$")

# GPU -> CUDA compute capability TensorRT compiles for. Engines are not portable across them.
ARCH_BY_FAMILY = {"ampere": "sm80", "ada": "sm89", "hopper": "sm90", "blackwell": "sm100"}
ARCH_BY_GPU = {"A10G": "sm86", "A40": "sm86", "A10": "sm86"}  # Ampere parts that are not sm80
FP8_ARCHS = {"sm89", "sm90", "sm100"}

QUANTIZATIONS = ("none", "fp8", "int4_awq", "int8_wo")
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# Default ``max_num_tokens`` of recent trtllm-build releases: the token budget of one batched step.
DEFAULT_MAX_NUM_TOKENS = 8192

# NGC Triton ``-trtllm-python-py3`` images -> the TensorRT-LLM release inside, from Triton's release
# compatibility matrix (docs/introduction/compatibility.md in triton-inference-server/server; the
# 2024-2026 edition lists the trtllm-python-py3 container up to 26.07). An engine must be built by the
# release that serves it (plan files are not portable across releases); a PyTorch-backend artifact's
# LLM-API configuration is keyed by it too. Tags after the last row are not known to llmctl.
TRTLLM_BY_TRITON_TAG = {
    "24.07": "0.11.0",
    "24.08": "0.12.0",
    "24.09": "0.13.0",
    "24.10": "0.14.0",
    "24.11": "0.15.0",
    "24.12": "0.16.0",
    "25.01": "0.17.0",
    "25.02": "0.17.0.post1",
    "25.03": "0.18.0",
    "25.04": "0.18.2",
    "25.05": "0.19.0",
    "25.06": "0.20.0",
    "25.07": "0.20.0",
    "25.08": "0.21.0",
    "25.09": "1.0.0",
    "25.10": "1.0.0",
    "25.11": "1.0.3.2510",
    "25.12": "1.1.0",
    "26.01": "1.1.0",
    "26.02": "1.1.0",
    "26.03": "1.2.0",
    "26.04": "1.2.1",
    "26.05": "1.2.1",
    "26.06": "1.2.1",
    "26.07": "1.2.1",
}
# The TensorRT engine backend (trtllm-build, convert_checkpoint.py, the inflight-batcher C++
# backend) was removed after TensorRT-LLM 1.3.0rc20, whose release notes call it "the last one
# supporting the TensorRT backend" (NVIDIA/TensorRT-LLM PRs #15763, #15907, #15918; migration guide
# "TensorRT Backend Removed"). Every release in the table above predates the removal.
LAST_ENGINE_RELEASE = "1.3.0rc20"
NEWEST_KNOWN_TAG = max(TRTLLM_BY_TRITON_TAG)
BACKENDS = ("pytorch", "tensorrt")


def image_tag(triton_image: str) -> str | None:
    """The ``YY.MM`` release of an NGC Triton TensorRT-LLM image reference, None when not one."""
    m = re.search(r":(\d\d\.\d\d)-trtllm", triton_image)
    return m.group(1) if m else None


def engine_build_problem(triton_image: str) -> str | None:
    """Why ``engine.backend: tensorrt`` cannot work with this image (None when it can).

    Fails closed: an image llmctl cannot place in its table may carry a release without
    trtllm-build, and an engine build would only find out after pulling 20 GB.
    """
    tag = image_tag(triton_image)
    if tag is None:
        return (
            f"{triton_image!r} is not an NGC <YY.MM>-trtllm-python-py3 image, so its TensorRT-LLM "
            "release (and whether it still ships trtllm-build) is unknown"
        )
    if tag in TRTLLM_BY_TRITON_TAG:
        return None
    if tag > NEWEST_KNOWN_TAG:
        return (
            f"Triton {tag} is newer than the releases known to ship trtllm-build (TensorRT-LLM "
            f"{LAST_ENGINE_RELEASE} was the last; the newest image known to carry an engine release "
            f"is {NEWEST_KNOWN_TAG}, TensorRT-LLM {TRTLLM_BY_TRITON_TAG[NEWEST_KNOWN_TAG]})"
        )
    return f"Triton {tag} predates the releases llmctl supports (24.07 and later)"


@dataclass(frozen=True)
class Checkpoint:
    """Where the weights come from: a Hugging Face repository at a commit, or a local folder."""

    source: str  # "hf" | "local"
    ref: str  # HF repo id, or the absolute folder path
    revision: str | None = None  # HF commit (40 hex) for "hf"
    tree_sha256: str | None = None  # digest of the folder's files for "local"

    def identity(self) -> dict[str, Any]:
        if self.source == "hf":
            return {"hf": self.ref, "revision": self.revision}
        return {"local_sha256": self.tree_sha256}


@dataclass(frozen=True)
class Plugins:
    """The trtllm-build plugin switches that matter for inflight batching."""

    gpt_attention_plugin: str = "auto"
    gemm_plugin: str = "auto"
    context_fmha: bool = True
    use_paged_context_fmha: bool = True
    remove_input_padding: bool = True
    multiple_profiles: bool = True


@dataclass(frozen=True)
class BuildSpec:
    model_id: str
    checkpoint: Checkpoint
    dtype: str  # "bfloat16" | "float16"
    quantization: str  # one of QUANTIZATIONS
    kv_cache_dtype: str | None  # "fp8" with fp8 quantisation, else the dtype
    tp: int
    pp: int
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    max_beam_width: int
    paged_kv_cache: bool
    plugins: Plugins
    gpu: str
    gpu_arch: str
    tensorrt_llm: str  # release that builds and serves it ("image:<ref>" when the image is unknown)
    triton_image: str
    architecture: str = ""  # e.g. "Llama-3.1-8B" from the planner, for the convert script's folder
    notes: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    def identity(self) -> dict[str, Any]:
        """Everything that decides the engine's bytes; the cache key hashes exactly this."""
        d = asdict(self)
        for volatile in ("notes", "model_id", "triton_image", "architecture"):
            d.pop(volatile)  # model_id is in the checkpoint; the image is reduced to its release
        d["checkpoint"] = self.checkpoint.identity()
        d["format"] = FORMAT_VERSION
        return d

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["world_size"] = self.world_size
        return d


def gpu_arch(gpu_name: str) -> str:
    """The SM architecture of a catalogue GPU (its family, with the sm86 Ampere parts named)."""
    from llmctl.sizing import get_gpu

    gpu = get_gpu(gpu_name)
    if gpu.name in ARCH_BY_GPU:
        return ARCH_BY_GPU[gpu.name]
    try:
        return ARCH_BY_FAMILY[gpu.family]
    except KeyError:
        raise BuildError(
            f"GPU {gpu.name}: no TensorRT target architecture known for family {gpu.family!r}"
        ) from None


def trtllm_release(triton_image: str) -> str:
    """The TensorRT-LLM release inside a Triton image (``image:<ref>`` when the tag is unknown)."""
    override = os.environ.get("LLMCTL_TRTLLM_VERSION")
    if override:
        return override
    tag = image_tag(triton_image)
    if tag in TRTLLM_BY_TRITON_TAG:
        return TRTLLM_BY_TRITON_TAG[tag]
    return f"image:{triton_image}"


def _looks_local(model_id: str) -> bool:
    return model_id.startswith(("/", "./", "../", "~")) or model_id.startswith("file://")


def resolve_checkpoint(bp: Blueprint) -> Checkpoint:
    """Identify the checkpoint without downloading it (see the module docstring)."""
    model_id: str = bp.model.id
    if _looks_local(model_id):
        path = bp.resolve_path(model_id.removeprefix("file://"))
        if not path.is_dir():
            raise BuildError(f"model.id {model_id!r}: checkpoint folder not found: {path}")
        from llmctl.engine.cache import digest_cache

        digests = digest_cache()
        try:
            tree = digests.tree(path)
        finally:
            digests.save()
        return Checkpoint("local", str(path), None, tree)
    revision = bp.model.revision
    if revision and COMMIT.match(revision):
        return Checkpoint("hf", model_id, revision)
    commit = _cached_commit(model_id, revision or "main")
    if commit is None:
        raise BuildError(
            f"model.revision {revision or '(unset)'!r} of {model_id} is not a pinned commit and the "
            "Hugging Face cache has no snapshot to resolve it: set model.revision to the 40-character "
            "commit id (see the model page's 'Files and versions' history)"
        )
    return Checkpoint("hf", model_id, commit)


def _cached_commit(repo_id: str, ref: str) -> str | None:
    """The commit a branch or tag pointed at in the local huggingface-hub cache (offline)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    refs = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    try:
        commit = refs.read_text().strip()
    except OSError:
        return None
    return commit if COMMIT.match(commit) else None


def _auto(value: Any) -> bool:
    return value in (None, "auto")


def derive_spec(bp: Blueprint, plan: Any, checkpoint: Checkpoint | None = None) -> BuildSpec:
    """The build specification for a blueprint and its capacity plan.

    The blueprint's explicit engine settings win over the plan (a person decided them); "auto"
    takes the plan's choice. Inconsistent combinations (fp8 on an Ampere GPU) fail here, before
    an hour of building does.
    """
    notes: list[str] = []
    checkpoint = checkpoint or resolve_checkpoint(bp)
    arch = gpu_arch(plan.gpu)

    quant = bp.engine.quantization
    plan_precision = str(plan.precision)
    if _auto(quant):
        quant = plan_precision if plan_precision in QUANTIZATIONS else "none"
        notes.append(f"quantisation {quant} from the capacity plan (precision {plan_precision})")
    if quant not in QUANTIZATIONS:
        raise BuildError(
            f"engine.quantization {quant!r}: expected one of {', '.join(QUANTIZATIONS)}"
        )
    if quant == "fp8" and arch not in FP8_ARCHS:
        raise BuildError(
            f"fp8 needs an Ada, Hopper or Blackwell GPU (sm89+); {plan.gpu} is {arch}: choose bf16 or int8_wo"
        )

    precision = bp.model.precision
    if precision in DTYPES:
        dtype = DTYPES[precision]
    elif plan_precision in DTYPES:
        dtype = DTYPES[plan_precision]
    else:
        dtype = "bfloat16"  # activations of quantised engines; every catalogue GPU is sm80+
    tp = bp.engine.tensor_parallel if not _auto(bp.engine.tensor_parallel) else int(plan.tp)
    pp = int(bp.engine.pipeline_parallel or 1)
    mbs = (
        bp.engine.max_batch_size
        if not _auto(bp.engine.max_batch_size)
        else int(plan.max_batch_size)
    )
    if int(mbs) < 1:
        raise BuildError(f"max batch size {mbs} from the capacity plan: expected at least 1")
    max_input = int(bp.model.max_input_tokens)
    max_seq = max_input + int(bp.model.max_output_tokens)
    # One scheduler step must hold a whole prompt (no chunked context assumed) and need not hold
    # more than every slot's prompt at once.
    max_num_tokens = min(int(mbs) * max_input, max(DEFAULT_MAX_NUM_TOKENS, max_input))
    plugins = Plugins(gemm_plugin="fp8" if quant == "fp8" and arch == "sm90" else "auto")
    model_info = getattr(plan, "model", None) or {}
    return BuildSpec(
        model_id=bp.model.id,
        checkpoint=checkpoint,
        dtype=dtype,
        quantization=quant,
        kv_cache_dtype="fp8" if quant == "fp8" else None,
        tp=int(tp),
        pp=pp,
        max_batch_size=int(mbs),
        max_input_len=max_input,
        max_seq_len=max_seq,
        max_num_tokens=max_num_tokens,
        max_beam_width=1,
        paged_kv_cache=True,
        plugins=plugins,
        gpu=str(plan.gpu),
        gpu_arch=arch,
        tensorrt_llm=trtllm_release(bp.engine.triton_image),
        triton_image=bp.engine.triton_image,
        architecture=str(model_info.get("name", "")) if isinstance(model_info, dict) else "",
        notes=tuple(notes),
    )


def engine_key(spec: BuildSpec) -> str:
    """The cache key and "engine version": 16 hex characters of sha256 over ``spec.identity()``.

    Sixteen characters fit a Kubernetes label value and keep paths short; collisions among one
    organisation's engines are not a practical concern at 64 bits.
    """
    import hashlib

    from llmctl.blueprint.model import canonical_json

    return hashlib.sha256(canonical_json(spec.identity()).encode()).hexdigest()[:16]
