"""Memory model: weights, KV cache and runtime reserve per GPU, and what fits.

Formulas follow TRT-LLM practice (the calibration README beside the data): weights divide by TP;
embeddings and ``lm_head`` stay 16-bit under fp8/int4 (ModelOpt excludes ``lm_head``); each GPU
stores ``ceil(kv_heads / tp)`` KV heads, so TP beyond the KV-head count replicates KV; the KV pool
is a fraction of the memory left after weights and the runtime reserve. MLA caches one latent per
token and layer on every GPU; sliding-window and chunked layers stop at their window; PP splits
the layers, and expert parallelism (attention data parallel) splits only the experts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from llmctl.errors import SizingError
from llmctl.sizing.architecture import Architecture, kv_heads_per_gpu
from llmctl.sizing.catalogue import PRECISIONS, Gpu
from llmctl.sizing.constants import DEFAULT_BACKEND, perf_constants

# Bytes per quantised linear weight. int4-AWQ: 4 bits + one fp16 scale per group of 128 weights
# (TRT-LLM/ModelOpt default) ≈ 4.125 bits; int8 weight-only adds one fp16 scale per channel;
# NVFP4: 4 bits + one FP8 scale per block of 16 = 4.5 bits.
WEIGHT_BYTES = {
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "fp4": 0.5 + 1 / 16,
    "int8_wo": 1.0,
    "int4_awq": 0.5 + 2 / 128,
}
HIGH_PRECISION_BYTES = 2.0  # embeddings, lm_head, norms, MoE router

# KV-cache element size: FP8 engines use an FP8 KV cache (as in NVIDIA's published tables); the
# others keep TRT-LLM's default 16-bit KV cache.
KV_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "fp4": 1.0, "int8_wo": 2.0, "int4_awq": 2.0}

TOKENS_PER_BLOCK = 64  # TRT-LLM paged KV block size: a sequence holds whole blocks
MAX_BATCH_SIZE = 4096  # trtllm-bench caps the engine batch (decoder buffers) at 4096


def check_precision(precision: str) -> str:
    p = precision.lower()
    if p not in PRECISIONS:
        raise SizingError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return p


def expert_bytes_per_weight(arch: Architecture, precision: str) -> float:
    """An expert weight's size: ``precision``'s, or narrower when the checkpoint ships it so."""
    wb = WEIGHT_BYTES[precision]
    return min(wb, arch.expert_weight_bytes) if arch.expert_weight_bytes else wb


def weight_bytes_total(arch: Architecture, precision: str) -> float:
    """Bytes of all weights at ``precision`` (whole model, before TP sharding)."""
    high = arch.embedding_params + arch.lm_head_params + arch.norm_params + arch.router_params
    experts = arch.total_expert_params * expert_bytes_per_weight(arch, precision)
    return (
        arch.dense_linear_params * WEIGHT_BYTES[precision] + experts + high * HIGH_PRECISION_BYTES
    )


def weight_bytes_per_gpu(
    arch: Architecture, precision: str, tp: int, pp: int = 1, ep: int = 1
) -> float:
    """Weights each GPU holds. TP shards every linear layer and the embeddings; PP splits the
    layers; with expert parallelism (attention data parallel, TensorRT-LLM's DEP) each GPU keeps
    the whole non-expert model and ``1/ep`` of the experts."""
    if ep > 1:
        experts = arch.total_expert_params * expert_bytes_per_weight(arch, precision)
        return ((weight_bytes_total(arch, precision) - experts) + experts / ep) / pp
    return weight_bytes_total(arch, precision) / (tp * pp)


def kv_bytes_per_token(
    arch: Architecture, precision: str, tp: int = 1, pp: int = 1, ep: int = 1
) -> float:
    """KV-cache bytes one token occupies on each GPU that holds it (every full-attention layer
    of its pipeline stage). Attention data parallelism (ep > 1) keeps whole sequences per GPU;
    MLA's latent is replicated across TP."""
    split = 1 if ep > 1 or arch.is_mla else tp
    kv = kv_heads_per_gpu(arch, split) if split > 1 else arch.num_kv_heads
    layers = arch.full_attention_layers / pp
    return arch.kv_factor * layers * kv * arch.head_dim * KV_BYTES[precision]


def runtime_reserve_bytes(
    arch: Architecture, tp: int, max_num_tokens: int | None = None, backend: str = DEFAULT_BACKEND
) -> float:
    """Memory neither weights nor KV: CUDA context, NCCL/cuBLAS workspaces, activations.

    Activations are one layer's worth for ``max_num_tokens`` tokens (TRT-LLM reuses activation
    buffers layer to layer: "activation size will be close to max number of input tokens * some
    constant factor"); the fixed part is a fitted constant per backend (the PyTorch backend also
    keeps CUDA-graph pools and its allocator's cache).
    """
    c = perf_constants(backend)
    tokens = max_num_tokens or int(c["max_num_tokens"])
    mlp = 2 * arch.intermediate_size * arch.experts_per_token / tp
    qkv = (arch.num_heads + 2 * arch.num_kv_heads) * arch.head_dim / tp
    per_token = 2.0 * (4 * arch.hidden_size + mlp + qkv)
    return float(c["runtime_reserve_gib"]) * 2**30 + tokens * per_token


@dataclass(frozen=True)
class FitResult:
    """Whether a model fits a TP group, and the memory arithmetic behind the answer."""

    fits: bool
    reason: str | None
    memory_gb_per_gpu: float
    weights_gb_per_gpu: float
    reserve_gb_per_gpu: float
    kv_pool_gb_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    kv_cache_tokens: int
    max_concurrency: int
    kv_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sequences_in_kv(
    kv_tokens: int, isl: int, osl: int, arch: Architecture | None = None, ranks: int = 1
) -> int:
    """Concurrent sequences the KV pool holds when each reserves ISL+OSL in whole blocks
    (windowed layers hold at most their window); ``ranks`` GPUs with a pool of their own each."""
    need = arch.kv_context(isl + osl) if arch is not None else isl + osl
    blocks = math.ceil(need / TOKENS_PER_BLOCK)
    return (kv_tokens // TOKENS_PER_BLOCK) // blocks * ranks


def check_fit(
    arch: Architecture,
    gpu: Gpu,
    precision: str,
    tp: int,
    isl: int,
    osl: int,
    kv_fraction: float | None = None,
    pp: int = 1,
    ep: int = 1,
    backend: str = DEFAULT_BACKEND,
) -> FitResult:
    """Does the model fit ``tp`` x ``pp`` GPUs at ``precision`` with room for one ISL+OSL sequence?

    The reason names the first constraint that fails, in the order an engineer would fix them:
    the GPU's precision support, the TP layout, the context window, the weights, the KV cache.
    ``kv_cache_tokens`` is per GPU; ``max_concurrency`` is the whole group's.
    """
    precision = check_precision(precision)
    frac = float(perf_constants()["kv_fraction"]) if kv_fraction is None else float(kv_fraction)
    mem = gpu.memory_bytes
    weights = weight_bytes_per_gpu(arch, precision, tp, pp, ep)
    reserve = runtime_reserve_bytes(arch, 1 if ep > 1 else tp, backend=backend)
    kv_tok = kv_bytes_per_token(arch, precision, tp, pp, ep)
    pool = max(0.0, (mem - weights - reserve) * frac)
    kv_tokens = int(pool // kv_tok)
    seqs = sequences_in_kv(kv_tokens, isl, osl, arch, ranks=ep if ep > 1 else 1)

    reason: str | None = None
    if precision not in gpu.precisions:
        reason = f"{gpu.name} does not support {precision} (supports {', '.join(gpu.precisions)})"
    elif tp < 1 or tp > gpu.max_tp:
        reason = f"TP {tp} exceeds the {gpu.max_tp} GPU(s) per node of {gpu.name}"
    elif ep > 1 and arch.num_experts % ep:
        reason = f"EP {ep} does not divide the model's {arch.num_experts} experts"
    elif tp > 1 and ep <= 1 and arch.num_heads % tp:
        reason = f"TP {tp} does not divide the model's {arch.num_heads} attention heads"
    elif isl + osl > arch.max_position_embeddings:
        reason = (
            f"ISL+OSL = {isl + osl} tokens exceeds the model's context window of "
            f"{arch.max_position_embeddings}"
        )
    elif weights + reserve > mem:
        reason = (
            f"weights need {weights / 1e9:.1f} GB per GPU plus {reserve / 1e9:.1f} GB runtime "
            f"reserve, more than the {mem / 1e9:.1f} GB of {gpu.name} at TP {tp}"
        )
    elif seqs < 1:
        reason = (
            f"no room for the KV cache of one {isl}+{osl}-token sequence: "
            f"{pool / 1e9:.2f} GB KV pool holds {kv_tokens} tokens, one sequence needs "
            f"{isl + osl} ({kv_tok * (isl + osl) / 1e9:.2f} GB)"
        )
    return FitResult(
        fits=reason is None,
        reason=reason,
        memory_gb_per_gpu=round(mem / 1e9, 3),
        weights_gb_per_gpu=round(weights / 1e9, 3),
        reserve_gb_per_gpu=round(reserve / 1e9, 3),
        kv_pool_gb_per_gpu=round(pool / 1e9, 3),
        kv_bytes_per_token_per_gpu=kv_tok,
        kv_cache_tokens=kv_tokens,
        max_concurrency=min(seqs, MAX_BATCH_SIZE * (ep if ep > 1 else 1)),
        kv_fraction=frac,
    )
