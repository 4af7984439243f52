"""Published measurements and the model's error on them (used by benchmarks/ and tests).

The CSVs live in ``../shared/calibration`` next to the repository (override with
``LLMCTL_CALIBRATION_DIR``). Rows are predicted exactly as trtllm-bench ran them: saturating
load, the row's precision for weights (FP8 KV cache under fp8/fp4),
``kv_cache_free_gpu_mem_fraction`` 0.95, the row's TP/PP/EP, and the execution backend of the
release that measured it. The online file is predicted as an open loop (``predict_online``).

Unit trap: the PyTorch-backend file gives both a group total and a per-GPU column (pages up to
1.0 printed totals, 1.2 and later per GPU); ``measured`` is always the group's total.
"""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from llmctl.sizing.architecture import Architecture, load_architecture
from llmctl.sizing.catalogue import Gpu, get_gpu
from llmctl.sizing.constants import perf_constants
from llmctl.sizing.openloop import burst_ttft_ms, estimate_rate
from llmctl.sizing.performance import Estimate, batch1_ttft_ms, estimate

THROUGHPUT_CSV = "trtllm-v0.17-max-throughput.csv"
ONLINE_CSV = "trtllm-v0.14-online.csv"
PYTORCH_CSV = "trtllm-pytorch-max-throughput.csv"
TTFT_CSV = "trtllm-v0.9-batch1-ttft.csv"
# Which execution backend produced each file's measurements.
BACKEND_OF = {
    THROUGHPUT_CSV: "tensorrt",
    TTFT_CSV: "tensorrt",
    PYTORCH_CSV: "pytorch",
    ONLINE_CSV: "tensorrt",
}
# The online benchmark sends this many requests per run (QPS=INF: all of them at once).
ONLINE_REQUESTS = 500


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
    pp: int = 1
    ep: int = 1
    release: str = ""
    backend: str = "tensorrt"

    @property
    def group(self) -> tuple[str, str, str]:
        """The (release, model, GPU) group a row was published in (the unit held back)."""
        return (self.release, self.model, self.gpu)


def load_rows(name: str = THROUGHPUT_CSV) -> list[Row]:
    """Rows of a calibration CSV; ``measured`` is the group's throughput (tok/s) or TTFT (ms)."""
    rows = []
    backend = BACKEND_OF.get(name, "tensorrt")
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
                    pp=int(r.get("pp") or 1),
                    ep=int(r.get("ep") or 1),
                    release=r.get("release") or "",
                    backend=backend,
                )
            )
    return [_as_benchmarked(r) for r in rows]


# Releases whose perf-overview ran every MoE model with ``--ep $ep_size`` and
# ``enable_attention_dp: true`` ("Reproducing Benchmarked Results", TensorRT-LLM 1.0): their
# "TPn" MoE columns are attention data parallel with the experts over the n GPUs (DEP n).
# 0.20 and 0.21 passed only ``--tp``; 1.2 and later print DEP columns (already ep = n).
MOE_ATTENTION_DP_RELEASES = frozenset({"1.0.0"})


def _as_benchmarked(row: Row) -> Row:
    """The parallel layout a row actually ran with, where its page's commands say more than its
    column header."""
    if row.release in MOE_ATTENTION_DP_RELEASES and row.ep == 1 and row.tp > 1:
        if _arch(row.model).is_moe:
            return replace(row, ep=row.tp)
    return row


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
        kv_fraction=float(perf_constants(row.backend)["bench_kv_fraction"]),
        pp=row.pp,
        ep=row.ep,
        backend=row.backend,
    )
    return est.throughput_tokens_per_s


def predict_ttft(row: Row) -> float:
    return batch1_ttft_ms(
        _arch(row.model), _gpu(row.gpu), row.precision, row.tp, row.isl, backend=row.backend
    )


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


@dataclass(frozen=True)
class OnlineRow:
    """One online-serving measurement: Poisson arrivals at ``qps`` (None: all at once)."""

    model: str
    gpu: str
    precision: str
    tp: int
    isl: int
    osl: int
    qps: float | None
    ttft_ms: float
    itl_ms: float
    output_tokens_per_s: float

    @property
    def group(self) -> tuple[str, int, int]:
        """The (model, ISL, OSL) sweep a row belongs to (the unit held out)."""
        return (self.model, self.isl, self.osl)


def load_online_rows(name: str = ONLINE_CSV) -> list[OnlineRow]:
    with (calibration_dir() / name).open(newline="", encoding="utf-8") as fh:
        return [
            OnlineRow(
                model=r["model"],
                gpu=r["gpu"],
                precision=r["precision"],
                tp=int(r["tp"]),
                isl=int(r["isl"]),
                osl=int(r["osl"]),
                qps=None if r["qps"].upper() == "INF" else float(r["qps"]),
                ttft_ms=float(r["mean_ttft_ms"]),
                itl_ms=float(r["mean_itl_ms"]),
                output_tokens_per_s=float(r["output_tokens_per_s"]),
            )
            for r in csv.DictReader(fh)
        ]


def predict_online(row: OnlineRow) -> Estimate:
    """The open-loop estimate at the row's rate; QPS=INF is a burst of ``ONLINE_REQUESTS``
    (``openloop.burst_ttft_ms``), its ITL the saturated engine's."""
    arch, gpu = _arch(row.model), _gpu(row.gpu)
    backend = BACKEND_OF[ONLINE_CSV]
    if row.qps is not None:
        return estimate_rate(
            arch, gpu, row.precision, row.tp, row.isl, row.osl, row.qps, backend=backend
        )
    sat = estimate(arch, gpu, row.precision, row.tp, row.isl, row.osl, backend=backend)
    ttft = burst_ttft_ms(
        arch, gpu, row.precision, row.tp, row.isl, row.osl, ONLINE_REQUESTS, backend=backend
    )
    return replace(sat, ttft_ms=ttft, latency_ms=ttft + (row.osl - 1) * sat.tpot_ms)
