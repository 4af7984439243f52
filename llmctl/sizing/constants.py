"""The performance model's constants (``llmctl/data/perf_constants.yaml``).

Only a few are fitted (benchmarks/fit_sizing.py writes them); the rest are stated assumptions.
``override_constants`` lets the fitting script and the cross-validation try candidate values
without writing the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmctl.sizing._data import load_data

_override: dict[str, Any] | None = None
_merged: dict[tuple[int, str], dict[str, Any]] = {}

# TensorRT-LLM's two execution paths differ in kernels and scheduling, so each has its own fitted
# efficiencies: "tensorrt" (prebuilt TensorRT engines, releases up to 0.x) and "pytorch" (the only
# backend since TensorRT-LLM removed TensorRT engines in 2026; the planner's default).
BACKENDS: tuple[str, ...] = ("pytorch", "tensorrt")
DEFAULT_BACKEND = "pytorch"


def _doc() -> dict[str, Any]:
    return _override if _override is not None else load_data("perf_constants.yaml")


def check_backend(backend: str) -> str:
    from llmctl.errors import SizingError

    b = backend.lower()
    if b not in BACKENDS:
        raise SizingError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return b


def perf_constants(backend: str = "tensorrt") -> dict[str, Any]:
    """The global constants, with ``backend``'s own section layered on top (possibly overridden).

    Cached per document and backend: the performance model reads these in its inner loop.
    """
    data = _doc()
    key = (id(data), backend)
    merged = _merged.get(key)
    if merged is None:
        merged = {**data["global"], **(data.get(backend) or {}).get("global", {})}
        if len(_merged) > 64:
            _merged.clear()
        _merged[key] = merged
    return merged


def efficiency(family: str, precision: str, backend: str = "tensorrt") -> tuple[float, float]:
    """(MFU, MBU) for a GPU family at a precision: achieved fraction of peak FLOP/s and bandwidth.

    Weight-only precisions run 16-bit GEMMs through dequantising kernels, so they take the fp16
    MFU scaled by ``weight_only_gemm_efficiency``; a family or precision with no fitted value of
    its own takes the closest one that has (fp4 -> fp8 -> fp16; family -> default family).
    """
    data = _doc()
    section = data.get(backend) or {}
    families = {**data["families"], **section.get("families", {})}
    default = perf_constants(backend)["default_family"]
    fam = families.get(family) or families[default]
    mfu_table = fam["mfu"]
    if precision == "fp4":
        mfu = float(mfu_table.get("fp4", mfu_table.get("fp8", mfu_table["fp16"])))
    elif precision == "fp8":
        mfu = float(mfu_table.get("fp8", mfu_table["fp16"]))
    else:
        mfu = float(mfu_table["fp16"])
        if precision in {"int8_wo", "int4_awq"}:
            mfu *= float(perf_constants(backend)["weight_only_gemm_efficiency"])
    return mfu, float(fam["mbu"])


@contextmanager
def override_constants(data: dict[str, Any]) -> Iterator[None]:
    """Evaluate the model with ``data`` in place of the shipped constants (not thread-safe)."""
    global _override
    previous = _override
    _override = data
    _merged.clear()  # the caller may have edited ``data`` in place since the last time
    try:
        yield
    finally:
        _override = previous
        _merged.clear()
