"""Fitting the few performance constants to published measurements (benchmarks/fit_sizing.py).

Pure Python (a bounded Nelder-Mead on squared log errors) so the fit reproduces anywhere the
package runs, with no numpy or scipy. Only the constants in ``FITTED`` (TensorRT engines),
``ONLINE_FITTED`` (engine launch and front-end overheads, on the online-serving rows) and
``PYTORCH_FITTED`` (the PyTorch backend, each fitted on its own backend's rows) move; everything
else in the model is datasheet physics or a stated assumption.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

from llmctl.sizing.calibration import (
    OnlineRow,
    Row,
    predict_online,
    predict_throughput,
    predict_ttft,
)
from llmctl.sizing.constants import override_constants

# (key path in perf_constants.yaml, lower bound, upper bound)
FITTED: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("families", "hopper", "mfu", "fp8"), 0.15, 0.95),
    (("families", "hopper", "mbu"), 0.4, 0.9),
    (("global", "runtime_reserve_gib"), 0.5, 8.0),
    (("global", "allreduce_efficiency"), 0.1, 1.0),
    (("global", "moe_gemm_efficiency"), 0.3, 1.5),
    (("global", "moe_half_tokens"), 0.0, 256.0),
    (("global", "kv_read_efficiency"), 0.2, 1.0),
    (("global", "sequence_overhead_us"), 0.0, 20.0),
)
TTFT_FITTED = (("global", "request_overhead_ms"), 0.0, 20.0)
# Fitted to the online rows (trtllm-v0.14-online.csv at finite rates): the TensorRT engines'
# per-layer launch overhead (no CUDA graphs by default: at low load a step is a few ms and the
# launches of each layer's kernels show; at trtllm-bench's saturating batches they hardly do),
# and the serving front end's per-request time before the first prompt chunk is scheduled
# (HTTP, tokenisation and detokenisation in Triton's pre/post-processing models).
ONLINE_FITTED: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("global", "layer_overhead_us"), 0.0, 300.0),
    (("global", "serving_overhead_ms"), 0.0, 20.0),
)
# The PyTorch backend's own efficiencies, fitted to trtllm-pytorch-max-throughput.csv: one MFU at
# the precision NVIDIA published and one MBU per GPU family with rows there, and the software
# terms that changed with the backend (scheduling overhead, MoE kernels, KV reads, collectives).
PYTORCH_FITTED: tuple[tuple[tuple[str, ...], float, float], ...] = (
    (("pytorch", "families", "hopper", "mfu", "fp8"), 0.15, 0.95),
    (("pytorch", "families", "hopper", "mbu"), 0.4, 0.95),
    (("pytorch", "families", "blackwell", "mfu", "fp4"), 0.1, 0.95),
    (("pytorch", "families", "blackwell", "mbu"), 0.4, 0.95),
    (("pytorch", "families", "blackwell-gddr", "mfu", "fp4"), 0.1, 0.95),
    (("pytorch", "families", "blackwell-gddr", "mbu"), 0.4, 0.95),
    (("pytorch", "global", "moe_gemm_efficiency"), 0.2, 1.5),
    (("pytorch", "global", "moe_half_tokens"), 0.0, 256.0),
    (("pytorch", "global", "kv_read_efficiency"), 0.2, 1.0),
    (("pytorch", "global", "allreduce_efficiency"), 0.1, 1.0),
    (("pytorch", "global", "sequence_overhead_us"), 0.0, 20.0),
    (("pytorch", "global", "step_overhead_ms"), 0.0, 5.0),
    # Full-hidden-state memory passes per layer and token (norms, residuals, activations) that
    # TP does not divide, and the share of the link the EP all-gather/reduce-scatter reach.
    (("pytorch", "global", "activation_passes"), 0.0, 60.0),
    (("pytorch", "global", "ep_collective_efficiency"), 0.05, 1.0),
    # Memory the PyTorch runtime keeps beside weights and KV (CUDA-graph pools, allocator cache,
    # NCCL and MoE workspaces): it decides the batch wherever the KV cache is the limit.
    (("pytorch", "global", "runtime_reserve_gib"), 0.5, 30.0),
    # Per pipeline-stage step (hand-over and synchronisation of each micro-batch).
    (("pytorch", "global", "pp_step_overhead_ms"), 0.0, 10.0),
)

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
        "layer_overhead_us": 0.0,  # fitted to the online rows (TensorRT engines)
        "pp_step_overhead_ms": 0.0,  # TensorRT engines: no PP rows to fit it on (assumption)
        "serving_overhead_ms": 0.0,  # fitted to the online rows
        # TensorRT engines fuse norms and residual adds into GEMM epilogues (assumption; the
        # 0.17 rows have no TP8 dense long-context spread to fit it on).
        "activation_passes": 0.0,
        "ep_collective_efficiency": 0.5,  # no EP rows for engines: of the order PyTorch's fit finds
        "allreduce_efficiency": 0.7,
        "allreduce_latency_us": 10.0,  # NCCL small-message latency (assumption)
        "moe_gemm_efficiency": 0.8,
        "moe_half_tokens": 16.0,  # rows per expert at which grouped GEMMs reach half their best
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
    # Overrides for the PyTorch backend; anything absent falls back to the sections above.
    "pytorch": {
        "global": {
            "moe_gemm_efficiency": 0.8,
            "moe_half_tokens": 16.0,
            "kv_read_efficiency": 0.7,
            "allreduce_efficiency": 0.7,
            "sequence_overhead_us": 2.0,
            "step_overhead_ms": 0.3,
            "layer_overhead_us": 0.0,  # CUDA graphs on: launches hidden (assumption)
            "activation_passes": 10.0,
            "ep_collective_efficiency": 0.5,
            "runtime_reserve_gib": 2.0,
            "pp_step_overhead_ms": 0.5,
            # TorchLlmArgs.disable_overlap_scheduler defaults to False: the host prepares the
            # next step while the GPU runs this one, which delays a first token by a step.
            "overlap_scheduler_steps": 1.0,
        },
        "families": {
            "hopper": {"mbu": 0.8, "mfu": {"fp8": 0.5, "fp16": 0.55}},
            "blackwell": {"mbu": 0.8, "mfu": {"fp4": 0.4, "fp8": 0.5, "fp16": 0.55}},
            "blackwell-gddr": {"mbu": 0.8, "mfu": {"fp4": 0.4, "fp8": 0.5, "fp16": 0.55}},
        },
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
    # PyTorch backend: published rows are Hopper FP8 and Blackwell NVFP4 only. Blackwell's FP8
    # and 16-bit GEMMs take Hopper's PyTorch share of peak (same kernels' generation gap unknown);
    # families with no PyTorch rows (Ampere, Ada) keep the TensorRT-engine fit above.
    torch = out.get("pytorch", {}).get("families", {})
    if "hopper" in torch:
        t_fp8 = float(torch["hopper"]["mfu"]["fp8"])
        t_fp16 = min(0.9, t_fp8 * FP16_OVER_FP8_MFU)
        torch["hopper"]["mfu"]["fp16"] = t_fp16
        for name, fam in torch.items():
            if name != "hopper":
                fam["mfu"]["fp8"] = t_fp8
                fam["mfu"]["fp16"] = t_fp16
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


# An online row the model finds unstable (no steady state) counts as this far off, per metric.
_UNSTABLE_LOG_ERROR = math.log(4.0)


def online_loss(rows: Sequence[OnlineRow]) -> float:
    """Mean squared log error of mean TTFT and mean inter-token latency over finite-rate rows
    (QPS=INF rows depend on the engine's unpublished max batch size; they are reported only)."""
    total, n = 0.0, 0
    for r in rows:
        if r.qps is None:
            continue
        est = predict_online(r)
        for pred, meas in ((est.ttft_ms, r.ttft_ms), (est.tpot_ms, r.itl_ms)):
            err = math.log(pred / meas) if math.isfinite(pred) else _UNSTABLE_LOG_ERROR
            total += err * err
            n += 1
    return total / max(n, 1)


def fit_online(rows: Sequence[OnlineRow], base: dict[str, Any], iters: int = 60) -> dict[str, Any]:
    """``base`` with ``ONLINE_FITTED`` fitted to online ``rows``."""
    doc = copy.deepcopy(base)

    def unpack(u: list[float]) -> None:
        for (path, lo, hi), ui in zip(ONLINE_FITTED, u, strict=True):
            _set(doc, path, lo + (hi - lo) * min(1.0, max(0.0, ui)))

    def objective(u: list[float]) -> float:
        unpack(u)
        with override_constants(doc):
            return online_loss(rows)

    x0 = [(_get(doc, path) - lo) / (hi - lo) for path, lo, hi in ONLINE_FITTED]
    unpack(nelder_mead(objective, x0, iters=iters))
    return doc


def fit_constants(
    rows: Sequence[Row],
    ttft_rows: Sequence[Row] = (),
    base: dict[str, Any] | None = None,
    iters: int = 400,
    online_rows: Sequence[OnlineRow] = (),
) -> dict[str, Any]:
    """Return a constants document with ``FITTED`` fitted to ``rows`` (throughput), the per-layer
    overheads to ``online_rows`` (alternating twice with ``FITTED``: the two interact only
    through small-batch steps; the online rows need the fp16 MFU the Hopper FP8 fit implies)
    and the request overhead to ``ttft_rows`` (batch-1 TTFT)."""
    doc = _fit(base or PRIORS, FITTED, rows, predict_throughput, iters)
    for _ in range(2 if online_rows else 0):  # alternate: the two sets interact weakly
        doc = fit_online(online_rows, propagate_priors(doc))
        doc = _fit(doc, FITTED, rows, predict_throughput, iters)
    if ttft_rows:
        doc = _fit(doc, (TTFT_FITTED,), ttft_rows, predict_ttft, 60)
    return propagate_priors(doc)


def fit_pytorch(
    rows: Sequence[Row], base: dict[str, Any] | None = None, iters: int = 400, restarts: int = 0
) -> dict[str, Any]:
    """Return ``base`` (the shipped or just-fitted document) with ``PYTORCH_FITTED`` fitted to
    PyTorch-backend throughput ``rows``; the TensorRT-engine constants are left as they are."""
    doc = _fit(base or PRIORS, PYTORCH_FITTED, rows, predict_throughput, iters)
    for _ in range(restarts):  # a fresh simplex from the optimum: NM's simplex can collapse
        doc = _fit(propagate_priors(doc), PYTORCH_FITTED, rows, predict_throughput, iters)
    return propagate_priors(doc)


def loss(rows: Sequence[Row], doc: dict[str, Any]) -> float:
    with override_constants(doc):
        return _loss(rows, predict_throughput)
