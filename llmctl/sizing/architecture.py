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

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def attention_params_per_layer(self) -> int:
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
        return self.num_layers * self.hidden_size * self.num_experts if self.is_moe else 0

    @property
    def dense_linear_params(self) -> int:
        """Quantisable linear weights outside the experts (attention projections)."""
        return self.num_layers * self.attention_params_per_layer

    @property
    def total_expert_params(self) -> int:
        return self.num_layers * self.num_experts * self.expert_params

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
        active_experts = self.num_layers * self.experts_per_token * self.expert_params
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
            self.dense_linear_params + self.num_layers * self.experts_per_token * self.expert_params
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
    intermediate = int(
        cfg.get("intermediate_size")
        or cfg.get("moe_intermediate_size")
        or cfg.get("n_inner")
        or 4 * hidden
    )
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
    per_token = int(cfg.get("num_experts_per_tok") or (1 if experts == 1 else 2))
    bias = bool(cfg.get("attention_bias", model_type in {"qwen2", "qwen2_moe"}))
    return Architecture(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
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
    )


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
    """KV heads each GPU stores: TP beyond the KV-head count replicates heads (at least one)."""
    return max(1, math.ceil(arch.num_kv_heads / tp))
