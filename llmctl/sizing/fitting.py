"""Fitting the few performance constants to published measurements (benchmarks/fit_sizing.py).

Pure Python (a bounded Nelder-Mead on squared log errors) so the fit reproduces anywhere the
package runs, with no numpy or scipy. Only the constants in ``FITTED`` move; everything else in
the model is datasheet physics or a stated assumption.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from llmctl.sizing.calibration import Row, predict_throughput, predict_ttft
from llmctl.sizing.constants import override_constants

# (key path in perf_constants.yaml, lower bound, upper bound)
FITTED: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("families", "hopper", "mfu", "fp8"), 0.15, 0.95),
    (("families", "hopper", "mbu"), 0.4, 0.9),
    (("global", "runtime_reserve_gib"), 0.5, 8.0),
    (("global", "allreduce_efficiency"), 0.1, 1.0),
    (("global", "moe_gemm_efficiency"), 0.3, 1.5),
    (("global", "kv_read_efficiency"), 0.2, 1.0),
    (("global", "sequence_overhead_us"), 0.0, 20.0),
)
TTFT_FITTED = (("global", "request_overhead_ms"), 0.0, 20.0)

# Where every fit starts, and what unfitted constants are. Round, physically plausible values:
# the fit must earn any departure from them.
PRIORS: dict[str, Any] = {
    "global": {
        "kv_fraction": 0.90,  # TRT-LLM KvCacheConfig.free_gpu_memory_fraction default
        "bench_kv_fraction": 0.95,  # what NVIDIA's published trtllm-bench tables use
        "max_num_tokens": 8192,  # TRT-LLM default tokens per step (activation buffers)
        "default_family": "hopper",
        "runtime_reserve_gib": 2.0,
        "roofline_exponent": 1.0,  # GEMMs do not overlap weight streaming with math (fit: 1.0)
        "step_overhead_ms": 0.3,  # host scheduling/launch per engine step (assumption)
        "sequence_overhead_us": 2.0,
        "request_overhead_ms": 3.0,
        "allreduce_efficiency": 0.7,
        "allreduce_latency_us": 10.0,  # NCCL small-message latency (assumption)
        "moe_gemm_efficiency": 0.8,
        "kv_read_efficiency": 0.7,
        "weight_only_gemm_efficiency": 0.8,  # dequantising W4A16/W8A16 kernels (assumption)
        "p95_over_mean": {"ttft": 1.5, "tpot": 1.1, "latency": 1.2},  # planning (assumption)
    },
    "families": {
        "hopper": {"mbu": 0.8, "mfu": {"fp8": 0.5, "fp16": 0.55}},
        "ampere": {"mbu": 0.8, "mfu": {"fp16": 0.55}},
        "ada": {"mbu": 0.8, "mfu": {"fp8": 0.5, "fp16": 0.55}},
        "blackwell": {"mbu": 0.8, "mfu": {"fp8": 0.5, "fp16": 0.55}},
    },
}
# 16-bit GEMMs reach a larger share of their (half as high) peak than FP8 ones do.
FP16_OVER_FP8_MFU = 1.1


def propagate_priors(doc: dict[str, Any]) -> dict[str, Any]:
    """Carry the Hopper FP8 fit to families and precisions with no published measurements.

    Without data, the honest prior is that the same software stack reaches the same share of
    each GPU's datasheet peak; the GPUs then differ only by their datasheet figures.
    """
    out = copy.deepcopy(doc)
    hopper = out["families"]["hopper"]
    fp8 = float(hopper["mfu"]["fp8"])
    fp16 = min(0.9, fp8 * FP16_OVER_FP8_MFU)
    hopper["mfu"]["fp16"] = fp16
    for name, fam in out["families"].items():
        if name == "hopper":
            continue
        fam["mbu"] = hopper["mbu"]
        fam["mfu"]["fp16"] = fp16
        if "fp8" in fam["mfu"]:
            fam["mfu"]["fp8"] = fp8
    return out


def _get(doc: dict[str, Any], path: Sequence[str]) -> float:
    for key in path[:-1]:
        doc = doc[key]
    return float(doc[path[-1]])


def _set(doc: dict[str, Any], path: Sequence[str], value: float) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def nelder_mead(
    f: Callable[[list[float]], float], x0: list[float], step: float = 0.1, iters: int = 400
) -> list[float]:
    """Minimise ``f`` from ``x0`` (coordinates scaled to [0, 1]); enough for a handful of knobs."""
    n = len(x0)
    simplex = [list(x0)]
    for i in range(n):
        x = list(x0)
        x[i] = x[i] + step if x[i] + step <= 1 else x[i] - step
        simplex.append(x)
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if values[-1] - values[0] < 1e-9:
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / n for j in range(n)]

        worst = simplex[-1]

        def towards(
            coef: float, centroid: list[float] = centroid, worst: list[float] = worst
        ) -> list[float]:
            return [c + coef * (w - c) for c, w in zip(centroid, worst, strict=True)]

        xr = towards(-1.0)
        fr = f(xr)
        if fr < values[0]:
            xe = towards(-2.0)
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = towards(0.5)
            fc = f(xc)
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:
                best = simplex[0]
                simplex = [best] + [
                    [b + 0.5 * (v - b) for b, v in zip(best, x, strict=True)] for x in simplex[1:]
                ]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]


def _loss(rows: Sequence[Row], predict: Callable[[Row], float]) -> float:
    total = 0.0
    for r in rows:
        p = predict(r)
        total += math.log(max(p, 1e-3) / r.measured) ** 2
    return total / max(len(rows), 1)


def _fit(
    base: dict[str, Any],
    params: Sequence[tuple[tuple[str, ...], float, float]],
    rows: Sequence[Row],
    predict: Callable[[Row], float],
    iters: int,
) -> dict[str, Any]:
    doc = copy.deepcopy(base)

    def unpack(u: list[float]) -> None:
        for (path, lo, hi), ui in zip(params, u, strict=True):
            _set(doc, path, lo + (hi - lo) * min(1.0, max(0.0, ui)))

    def objective(u: list[float]) -> float:
        unpack(u)
        with override_constants(doc):
            return _loss(rows, predict)

    x0 = [(_get(doc, path) - lo) / (hi - lo) for path, lo, hi in params]
    best = nelder_mead(objective, x0, iters=iters)
    unpack(best)
    return doc


def fit_constants(
    rows: Sequence[Row],
    ttft_rows: Sequence[Row] = (),
    base: dict[str, Any] | None = None,
    iters: int = 400,
) -> dict[str, Any]:
    """Return a constants document with ``FITTED`` fitted to ``rows`` (throughput) and the
    request overhead fitted to ``ttft_rows`` (batch-1 first-token latency)."""
    doc = _fit(base or PRIORS, FITTED, rows, predict_throughput, iters)
    if ttft_rows:
        doc = _fit(doc, (TTFT_FITTED,), ttft_rows, predict_ttft, 60)
    return propagate_priors(doc)


def loss(rows: Sequence[Row], doc: dict[str, Any]) -> float:
    with override_constants(doc):
        return _loss(rows, predict_throughput)
