"""Model architecture: the handful of config.json fields that decide memory and compute.

Sources, in order: a local ``config.json`` (file or directory), the bundled catalogue
(``llmctl/data/models.yaml``), then the huggingface-hub cache (offline: nothing downloads at run
time, per DESIGN.md). Parameter counts are derived from the config rather than trusted from a
model card, so a fine-tune with a bigger vocabulary sizes correctly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.errors import SizingError
from llmctl.sizing._data import load_data

# Architectures whose MLP is a plain up/down projection rather than a gated (SwiGLU) one.
_UNGATED = {"gpt2", "gpt_neox", "gptj", "opt", "falcon", "phi", "bloom", "starcoder", "gpt_bigcode"}


@dataclass(frozen=True)
class Architecture:
    """Shape of a decoder-only transformer (dense or mixture-of-experts)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    num_experts: int = 1
    experts_per_token: int = 1
    attention_bias: bool = False
    gated_mlp: bool = True
    model_type: str = "llama"
    # Layers whose MLP is dense (DeepSeek's first_k_dense_replace, Llama-4 Maverick's interleaved
    # dense layers) and that MLP's width; shared experts every MoE layer runs (total width).
    dense_layers: int = 0
    dense_intermediate_size: int = 0
    shared_expert_size: int = 0
    # Multi-head latent attention (DeepSeek-V3/R1): the KV cache holds one compressed latent of
    # kv_lora_rank + qk_rope_head_dim per token and layer, whatever the TP.
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # Layers that attend to a bounded window (gpt-oss sliding window, Llama-4 chunked attention):
    # their KV cache per sequence stops growing at ``window`` tokens.
    window_layers: int = 0
    window: int = 0
    # Bytes per expert weight of a checkpoint published pre-quantised (gpt-oss: MXFP4 experts,
    # 4 bits + one 8-bit scale per 32 = 4.25 bits); serving never widens them. 0: not fixed.
    expert_weight_bytes: float = 0.0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.dense_layers if self.is_moe else 0

    @property
    def full_attention_layers(self) -> int:
        return self.num_layers - self.window_layers

    def kv_context(self, tokens: float) -> float:
        """KV entries a ``tokens``-long sequence holds, counted in full-attention-layer tokens
        (the unit ``memory.kv_bytes_per_token`` prices): windowed layers stop at the window."""
        if not self.window_layers:
            return tokens
        return tokens + self.window_layers / self.full_attention_layers * min(tokens, self.window)

    @property
    def kv_factor(self) -> int:
        """Cached vectors per KV head and token: K and V, or MLA's one latent."""
        return 1 if self.is_mla else 2

    @property
    def attention_head_dim(self) -> float:
        """Mean of the QK and V head widths: what prefill's attention FLOPs scale with."""
        if self.is_mla:
            return (self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim) / 2
        return float(self.head_dim)

    @property
    def attention_params_per_layer(self) -> int:
        if self.is_mla:
            h, heads = self.hidden_size, self.num_heads
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.q_lora_rank:
                q = h * self.q_lora_rank + self.q_lora_rank * heads * qk
            else:
                q = h * heads * qk
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv += self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + heads * self.v_head_dim * h
        q = self.hidden_size * self.num_heads * self.head_dim
        kv = 2 * self.hidden_size * self.num_kv_heads * self.head_dim
        o = self.num_heads * self.head_dim * self.hidden_size
        bias = (
            (self.num_heads + 2 * self.num_kv_heads) * self.head_dim if self.attention_bias else 0
        )
        return q + kv + o + bias

    @property
    def expert_params(self) -> int:
        """Parameters of one expert's MLP (the whole MLP for a dense model)."""
        mats = 3 if self.gated_mlp else 2
        return mats * self.hidden_size * self.intermediate_size

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tie_word_embeddings else self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    @property
    def router_params(self) -> int:
        return self.moe_layers * self.hidden_size * self.num_experts

    @property
    def dense_linear_params(self) -> int:
        """Quantisable linear weights every token runs through: attention projections, dense
        MLP layers of a MoE model, shared experts (the whole MLP of a dense model)."""
        mats = 3 if self.gated_mlp else 2
        params = self.num_layers * self.attention_params_per_layer
        if not self.is_moe:
            return params + self.num_layers * self.expert_params
        params += self.dense_layers * mats * self.hidden_size * self.dense_intermediate_size
        return params + self.moe_layers * mats * self.hidden_size * self.shared_expert_size

    @property
    def total_expert_params(self) -> int:
        """Routed experts' weights (zero for a dense model, whose MLP is dense_linear)."""
        return self.moe_layers * self.num_experts * self.expert_params

    @property
    def total_params(self) -> int:
        return (
            self.dense_linear_params
            + self.total_expert_params
            + self.embedding_params
            + self.lm_head_params
            + self.norm_params
            + self.router_params
        )

    @property
    def active_params(self) -> int:
        """Parameters touched per token: MoE routes each token through ``experts_per_token``."""
        active_experts = self.moe_layers * self.experts_per_token * self.expert_params
        return (
            self.dense_linear_params
            + active_experts
            + self.embedding_params
            + self.lm_head_params
            + self.norm_params
            + self.router_params
        )

    @property
    def active_block_params(self) -> int:
        """Active parameters inside the transformer blocks: what every token multiplies by."""
        return (
            self.dense_linear_params + self.moe_layers * self.experts_per_token * self.expert_params
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "attention_heads": self.num_heads,
            "kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "experts": self.num_experts,
            "experts_per_token": self.experts_per_token,
            "total_params": self.total_params,
            "active_params": self.active_params,
            "max_position_embeddings": self.max_position_embeddings,
            "attention": "mla" if self.is_mla else "gqa",
            "window_layers": self.window_layers,
        }


def architecture_from_config(config: dict[str, Any], name: str = "model") -> Architecture:
    """Build an Architecture from a Hugging Face ``config.json`` mapping."""
    cfg = dict(config)
    if "text_config" in cfg and "num_hidden_layers" not in cfg:  # multimodal wrappers
        cfg = {**cfg["text_config"], **{k: v for k, v in cfg.items() if k != "text_config"}}
    try:
        layers = int(cfg.get("num_hidden_layers", cfg.get("n_layer", 0)))
        hidden = int(cfg.get("hidden_size", cfg.get("n_embd", 0)))
        heads = int(cfg.get("num_attention_heads", cfg.get("n_head", 0)))
        vocab = int(cfg["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SizingError(f"config for {name} lacks a usable field: {exc}") from None
    if min(layers, hidden, heads, vocab) <= 0:
        raise SizingError(
            f"config for {name} lacks num_hidden_layers/hidden_size/num_attention_heads"
        )
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    model_type = str(cfg.get("model_type", "llama"))
    experts = int(
        cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 1
    )
    per_token = int(cfg.get("num_experts_per_tok") or (1 if experts == 1 else 2))
    dense_width = int(cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * hidden)
    # A MoE expert's width: moe_intermediate_size where the config has one (Qwen3-MoE, DeepSeek),
    # else intermediate_size (Mixtral, Llama-4, gpt-oss).
    expert_width = (
        int(cfg.get("moe_intermediate_size") or dense_width) if experts > 1 else dense_width
    )
    dense_layers, dense_mlp, shared = _moe_layout(cfg, experts, layers, dense_width, expert_width)
    bias = bool(cfg.get("attention_bias", model_type in {"qwen2", "qwen2_moe"}))
    window_layers, window = _windowed_layers(cfg, layers)
    mla = int(cfg.get("kv_lora_rank") or 0)
    return Architecture(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=1 if mla else kv_heads,
        head_dim=int(cfg.get("kv_lora_rank", 0)) + int(cfg.get("qk_rope_head_dim", 0))
        if mla
        else head_dim,
        intermediate_size=expert_width,
        vocab_size=vocab,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=int(
            cfg.get("max_position_embeddings") or cfg.get("n_positions") or 4096
        ),
        num_experts=experts,
        experts_per_token=min(per_token, experts),
        attention_bias=bias,
        gated_mlp=model_type not in _UNGATED,
        model_type=model_type,
        dense_layers=dense_layers,
        dense_intermediate_size=dense_mlp,
        shared_expert_size=shared,
        kv_lora_rank=mla,
        q_lora_rank=int(cfg.get("q_lora_rank") or 0),
        qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 0) if mla else 0,
        qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 0) if mla else 0,
        v_head_dim=int(cfg.get("v_head_dim") or 0) if mla else 0,
        window_layers=window_layers,
        window=window,
        expert_weight_bytes=_native_expert_bytes(cfg),
    )


def _native_expert_bytes(cfg: dict[str, Any]) -> float:
    """Bytes per expert weight fixed by the checkpoint's own quantisation (MXFP4), else 0."""
    quant = cfg.get("quantization_config") or {}
    if str(quant.get("quant_method", "")).lower() == "mxfp4":
        return 0.5 + 1 / 32
    return 0.0


def _moe_layout(
    cfg: dict[str, Any], experts: int, layers: int, dense_width: int, expert_width: int
) -> tuple[int, int, int]:
    """(dense MLP layers, their width, shared-expert width per MoE layer) of a MoE config."""
    if experts <= 1:
        return 0, 0, 0
    dense = int(cfg.get("first_k_dense_replace") or 0)  # DeepSeek-V3/R1
    step = int(cfg.get("interleave_moe_layer_step") or 1)  # Llama-4: every step-th layer is MoE
    if step > 1:
        dense = layers - layers // step
    dense += len(cfg.get("mlp_only_layers") or ())  # Qwen-MoE
    dense_mlp = int(cfg.get("intermediate_size_mlp") or dense_width)
    shared = int(cfg.get("n_shared_experts") or 0) * expert_width
    shared += int(cfg.get("shared_expert_intermediate_size") or 0)
    if str(cfg.get("model_type", "")).startswith("llama4"):
        shared = expert_width  # Llama-4: one shared expert of the routed experts' width
    return dense, dense_mlp, shared


def _windowed_layers(cfg: dict[str, Any], layers: int) -> tuple[int, int]:
    """(layers attending to a bounded window, the window) for sliding or chunked attention."""
    types = cfg.get("layer_types")
    window = int(cfg.get("sliding_window") or 0)
    if types and window:  # gpt-oss: alternating sliding_attention / full_attention
        return sum(1 for t in types if "sliding" in str(t)), window
    chunk = int(cfg.get("attention_chunk_size") or 0)
    rope = cfg.get("no_rope_layers")  # Llama-4: 1 = RoPE layer with chunked attention
    if chunk and rope:
        return sum(1 for r in rope if r), chunk
    return 0, 0


def _catalogue_lookup(model: str) -> Architecture | None:
    wanted = model.strip().lower()
    short = wanted.rsplit("/", 1)[-1]
    for key, entry in load_data("models.yaml")["models"].items():
        names = {key.lower(), *(i.lower() for i in entry.get("ids", ()))}
        names |= {n.rsplit("/", 1)[-1] for n in names}
        if wanted in names or short in names:
            return architecture_from_config(entry["config"], name=key)
    return None


def _hf_cache_config(model: str) -> Path | None:
    """The cached config.json of a Hugging Face id, without touching the network."""
    if model.count("/") != 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id=model, filename="config.json")
    except Exception:  # invalid repo id and similar: treat as not cached
        return None
    return Path(found) if isinstance(found, str) else None


def load_architecture(model: str) -> Architecture:
    """Resolve ``model`` (local path, bundled name or Hugging Face id) to an Architecture."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SizingError(f"cannot read model config {path}: {exc}") from None
        return architecture_from_config(config, name=path.parent.name or str(path))
    found = _catalogue_lookup(model)
    if found is not None:
        return found
    cached = _hf_cache_config(model)
    if cached is not None:
        config = json.loads(cached.read_text(encoding="utf-8"))
        return architecture_from_config(config, name=model)
    raise SizingError(
        f"unknown model {model!r}: not a local path, not in the bundled catalogue, and no "
        "config.json in the huggingface-hub cache; pass a directory or config.json path, or fetch "
        f"it once with `huggingface-cli download {model} config.json`"
    )


def kv_heads_per_gpu(arch: Architecture, tp: int) -> int:
    """KV heads each GPU stores: TP beyond the KV-head count replicates heads (at least one);
    MLA's single latent is replicated on every GPU of the group."""
    return max(1, math.ceil(arch.num_kv_heads / tp))
