"""Published measurements and the model's error on them (used by benchmarks/ and tests).

The CSVs live in ``../shared/calibration`` next to the repository (override with
``LLMCTL_CALIBRATION_DIR``). Rows are predicted exactly as trtllm-bench ran them: saturating
load, FP8 weights and KV cache, ``kv_cache_free_gpu_mem_fraction`` 0.95.
"""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from llmctl.sizing.architecture import Architecture, load_architecture
from llmctl.sizing.catalogue import Gpu, get_gpu
from llmctl.sizing.constants import perf_constants
from llmctl.sizing.performance import batch1_ttft_ms, estimate

THROUGHPUT_CSV = "trtllm-v0.17-max-throughput.csv"
TTFT_CSV = "trtllm-v0.9-batch1-ttft.csv"


def calibration_dir() -> Path:
    env = os.environ.get("LLMCTL_CALIBRATION_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "calibration"


@dataclass(frozen=True)
class Row:
    model: str
    gpu: str
    precision: str
    tp: int
    isl: int
    osl: int
    measured: float


def load_rows(name: str = THROUGHPUT_CSV) -> list[Row]:
    """Rows of a calibration CSV; ``measured`` is throughput (tok/s) or TTFT (ms)."""
    rows = []
    with (calibration_dir() / name).open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            value = r.get("output_tokens_per_s_total") or r.get("ttft_ms") or "nan"
            rows.append(
                Row(
                    model=r["model"],
                    gpu=r["gpu"],
                    precision=r["precision"],
                    tp=int(r["tp"]),
                    isl=int(r["isl"]),
                    osl=int(r.get("osl") or 1),
                    measured=float(value),
                )
            )
    return rows


@cache
def _arch(model: str) -> Architecture:
    return load_architecture(model)


@cache
def _gpu(name: str) -> Gpu:
    return get_gpu(name)


def predict_throughput(row: Row) -> float:
    est = estimate(
        _arch(row.model),
        _gpu(row.gpu),
        row.precision,
        row.tp,
        row.isl,
        row.osl,
        kv_fraction=float(perf_constants()["bench_kv_fraction"]),
    )
    return est.throughput_tokens_per_s


def predict_ttft(row: Row) -> float:
    return batch1_ttft_ms(_arch(row.model), _gpu(row.gpu), row.precision, row.tp, row.isl)


def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error; a row predicted not to fit counts as 100% off."""
    return abs(predicted - measured) / measured * 100.0


def summary(errors: list[float]) -> tuple[float, float]:
    """(median, p90) of a list of absolute percentage errors."""
    if not errors:
        return 0.0, 0.0
    ordered = sorted(errors)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return statistics.median(ordered), p90
