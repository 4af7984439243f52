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


def perf_constants() -> dict[str, Any]:
    """The global constants (``global:`` section), possibly overridden."""
    data = _override if _override is not None else load_data("perf_constants.yaml")
    return data["global"]


def efficiency(family: str, precision: str) -> tuple[float, float]:
    """(MFU, MBU) for a GPU family at a precision: achieved fraction of peak FLOP/s and bandwidth.

    Weight-only precisions run 16-bit GEMMs through dequantising kernels, so they take the fp16
    MFU scaled by ``weight_only_gemm_efficiency``.
    """
    data = _override if _override is not None else load_data("perf_constants.yaml")
    fam = data["families"].get(family) or data["families"][data["global"]["default_family"]]
    mfu_table = fam["mfu"]
    if precision == "fp8":
        mfu = float(mfu_table.get("fp8", mfu_table["fp16"]))
    else:
        mfu = float(mfu_table["fp16"])
        if precision in {"int8_wo", "int4_awq"}:
            mfu *= float(data["global"]["weight_only_gemm_efficiency"])
    return mfu, float(fam["mbu"])


@contextmanager
def override_constants(data: dict[str, Any]) -> Iterator[None]:
    """Evaluate the model with ``data`` in place of the shipped constants (not thread-safe)."""
    global _override
    previous = _override
    _override = data
    try:
        yield
    finally:
        _override = previous
