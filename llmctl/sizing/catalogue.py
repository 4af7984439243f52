"""The GPU catalogue: what each accelerator offers the memory and performance models.

The numbers live in ``llmctl/data/gpus.yaml`` (data, not code) so that adding a GPU or updating a
price is a one-line change reviewed by anyone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from llmctl.errors import SizingError
from llmctl.sizing._data import load_data

PRECISIONS: tuple[str, ...] = ("fp16", "bf16", "fp8", "fp4", "int8_wo", "int4_awq")

# GEMM rate a precision runs at: weight-only quantisation dequantises to 16-bit before the MMA.
COMPUTE_DTYPE = {
    "fp16": "fp16",
    "bf16": "fp16",
    "fp8": "fp8",
    "fp4": "fp4",  # NVFP4 (Blackwell): FP4 weights and activations, FP4 tensor cores
    "int8_wo": "fp16",
    "int4_awq": "fp16",
}


@dataclass(frozen=True)
class Gpu:
    """One accelerator model (per-GPU figures)."""

    name: str
    family: str
    memory_mib: float
    bandwidth_gbs: float
    tflops: dict[str, float]
    precisions: tuple[str, ...]
    link: str
    link_gbs: float
    pair_link_gbs: float | None
    max_tp: int
    price_per_hour: float
    aliases: tuple[str, ...] = field(default=())

    @property
    def memory_bytes(self) -> float:
        return self.memory_mib * 2**20

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    def peak_flops(self, precision: str) -> float:
        """Dense tensor FLOP/s the precision's GEMMs run at."""
        return self.tflops[COMPUTE_DTYPE[precision]] * 1e12

    def link_bytes_per_s(self, tp: int) -> float:
        """One-direction GPU-to-GPU bandwidth seen by a TP group (datasheets quote both ways)."""
        gbs = self.pair_link_gbs if tp == 2 and self.pair_link_gbs else self.link_gbs
        return gbs * 1e9 / 2


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


def _gpu_from(name: str, raw: dict) -> Gpu:
    link = raw.get("interconnect", {})
    return Gpu(
        name=name,
        family=raw["family"],
        memory_mib=float(raw["memory_mib"]),
        bandwidth_gbs=float(raw["bandwidth_gbs"]),
        tflops={k: float(v) for k, v in raw["tflops"].items()},
        precisions=tuple(raw["precisions"]),
        link=str(link.get("type", "none")),
        link_gbs=float(link.get("bandwidth_gbs", 0.0)),
        pair_link_gbs=float(link["pair_bandwidth_gbs"]) if "pair_bandwidth_gbs" in link else None,
        max_tp=int(raw.get("max_tp", 8)),
        price_per_hour=float(raw["price_per_hour"]),
        aliases=tuple(raw.get("aliases", ())),
    )


def list_gpus(prices: dict[str, float] | None = None) -> list[Gpu]:
    """Every catalogue GPU, with prices overridden where ``prices`` names them."""
    return [get_gpu(name, prices) for name in load_data("gpus.yaml")["gpus"]]


def get_gpu(name: str, prices: dict[str, float] | None = None) -> Gpu:
    """Look a GPU up by catalogue name or alias, case-insensitively.

    ``prices`` maps GPU names or aliases to USD per GPU-hour; the catalogue's prices are only
    indicative, so a blueprint's negotiated prices take precedence.
    """
    table = load_data("gpus.yaml")["gpus"]
    wanted = _norm(name)
    for key, raw in table.items():
        if wanted == _norm(key) or wanted in {_norm(a) for a in raw.get("aliases", ())}:
            gpu = _gpu_from(key, raw)
            break
    else:
        import difflib

        names = list(table)
        spellings = {_norm(a): key for key, raw in table.items() for a in raw.get("aliases", ())}
        spellings.update({_norm(key): key for key in names})
        close = difflib.get_close_matches(wanted, list(spellings), n=1, cutoff=0.5)
        hint = f" (did you mean {spellings[close[0]]}?)" if close else ""
        raise SizingError(f"unknown GPU {name!r}{hint}; known GPUs: {', '.join(names)}")
    for pname, price in (prices or {}).items():
        norm = _norm(pname)
        if norm == _norm(gpu.name) or norm in {_norm(a) for a in gpu.aliases}:
            gpu = replace(gpu, price_per_hour=float(price))
    return gpu
