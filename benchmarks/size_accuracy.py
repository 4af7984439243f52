"""Error of `llmctl size` against published TensorRT-LLM and NIM measurements.

    python benchmarks/size_accuracy.py            # per-file summaries, TTFT, KV collapse, NIM case
    python benchmarks/size_accuracy.py --rows     # + every row
    python benchmarks/size_accuracy.py --cv       # + leave-one-group-out cross-validation

In-sample uses the shipped llmctl/data/perf_constants.yaml. Cross-validation refits the
constants of the file's backend (benchmarks/fit_sizing.py's procedure, from the same priors)
without one (release, model, GPU) group at a time and predicts that group: the honest number for
the groups the fit never saw, which is what the held-back calibration rows will measure.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmctl.sizing import estimate, get_gpu, load_architecture  # noqa: E402
from llmctl.sizing._data import load_data  # noqa: E402
from llmctl.sizing.calibration import (  # noqa: E402
    ONLINE_CSV,
    PYTORCH_CSV,
    THROUGHPUT_CSV,
    TTFT_CSV,
    OnlineRow,
    Row,
    ape,
    load_online_rows,
    load_rows,
    predict_online,
    predict_throughput,
    predict_ttft,
    summary,
)
from llmctl.sizing.constants import override_constants  # noqa: E402
from llmctl.sizing.fitting import (  # noqa: E402
    PRIORS,
    TTFT_FITTED,
    _fit,
    fit_constants,
    fit_online,
    fit_pytorch,
)

# NVIDIA NIM LLM benchmarking guide, "Performance" (docs.nvidia.com/nim/benchmarking/llm/1.0.0/
# performance), NIM 1.8.0 for Llama-3.3-70B-Instruct on 2 x H100 80GB, FP8, TP2, 5,000 input /
# 500 output tokens, AIPerf at fixed concurrency (a closed loop): (concurrency, mean TTFT ms,
# mean ITL ms, output tokens/s).
NIM_CASE = {
    "model": "meta-llama/Llama-3.3-70B-Instruct",
    "gpu": "H100-SXM-80GB",
    "precision": "fp8",
    "tp": 2,
    "isl": 5000,
    "osl": 500,
    "rows": (
        (1, 406.77, 18.58, 51.67),
        (5, 546.7, 21.83, 218.48),
        (25, 688.69, 38.75, 623.4),
        (50, 834.51, 59.73, 814.37),
        (100, 7996.25, 92.91, 917.26),
        (150, 34794.22, 92.86, 920.9),
        (200, 61680.22, 93.06, 920.54),
        (250, 88605.32, 93.2, 920.12),
    ),
}


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1].replace("-Instruct", "")


def report(label: str, errors: list[float], ratios: list[float] | None = None) -> None:
    med, p90 = summary(errors)
    worst = max(errors) if errors else 0.0
    extra = ""
    if ratios:
        extra = f", worst ratio {max(max(ratios), 1 / min(ratios)):.2f}x"
    print(
        f"{label:52} n={len(errors):3}  median APE {med:5.1f}%  p90 {p90:5.1f}%  "
        f"max {worst:6.1f}%{extra}"
    )


def _group_key(r: Row) -> tuple[str, str, str]:
    return (r.release, _short(r.model), r.gpu)


def in_sample(name: str, rows: list[Row], show_rows: bool) -> None:
    preds = [predict_throughput(r) for r in rows]
    errors = [ape(p, r.measured) for p, r in zip(preds, rows, strict=True)]
    ratios = [p / r.measured for p, r in zip(preds, rows, strict=True)]
    if show_rows:
        for r, p in zip(rows, preds, strict=True):
            print(
                f"  {r.release:13} {_short(r.model):28} {r.gpu:22} {r.precision:4} "
                f"tp{r.tp} pp{r.pp} ep{r.ep} {r.isl:>5}/{r.osl:<5} measured {r.measured:9.0f} "
                f"predicted {p:9.0f}  x{p / r.measured:.2f}"
            )
    groups: dict[Any, list[float]] = defaultdict(list)
    for r, e in zip(rows, errors, strict=True):
        groups[(_short(r.model), r.gpu, r.precision)].append(e)
    for key in sorted(groups):
        report(f"  {key[0]} / {key[1]} / {key[2]}", groups[key])
    report(f"{name}: in-sample", errors, ratios)


def _held_out(
    rows: list[Row], fit: Callable[[list[Row]], dict[str, Any]], key: Callable[[Row], Any]
) -> tuple[list[float], list[float]]:
    errors: list[float] = []
    ratios: list[float] = []
    for g in sorted({key(r) for r in rows}, key=str):
        train = [r for r in rows if key(r) != g]
        test = [r for r in rows if key(r) == g]
        doc = fit(train)
        with override_constants(doc):
            preds = [predict_throughput(r) for r in test]
        err = [ape(p, r.measured) for p, r in zip(preds, test, strict=True)]
        report(f"  held out {' / '.join(str(x) for x in g)}", err)
        errors += err
        ratios += [p / r.measured for p, r in zip(preds, test, strict=True)]
    return errors, ratios


def cross_validate(engine: list[Row], ttft: list[Row], torch: list[Row], iters: int) -> None:
    shipped = copy.deepcopy(load_data("perf_constants.yaml"))
    torch_base = {**shipped, "pytorch": copy.deepcopy(PRIORS["pytorch"])}
    # The engine folds keep the per-layer overhead fitted to the online file (another table).
    engine_base = copy.deepcopy(PRIORS)
    engine_base["global"]["layer_overhead_us"] = shipped["global"]["layer_overhead_us"]

    print(f"\n{THROUGHPUT_CSV}: leave one (model, GPU) group out, refit {iters} iterations:")
    err, rat = _held_out(
        engine,
        lambda train: fit_constants(train, ttft, engine_base, iters=iters),
        lambda r: (_short(r.model), r.gpu),
    )
    report(f"{THROUGHPUT_CSV}: leave-one-group-out", err, rat)

    print(f"\n{PYTORCH_CSV}: leave one (release, model, GPU) group out, refit {iters} iterations:")
    err, rat = _held_out(
        torch, lambda train: fit_pytorch(train, torch_base, iters=iters), _group_key
    )
    report(f"{PYTORCH_CSV}: leave-one-group-out", err, rat)

    print(f"\n{TTFT_CSV}: leave one model out, refit its one constant (request overhead):")
    errors: list[float] = []
    for model in sorted({r.model for r in ttft}):
        train = [r for r in ttft if r.model != model]
        test = [r for r in ttft if r.model == model]
        doc = _fit(copy.deepcopy(shipped), (TTFT_FITTED,), train, predict_ttft, 60)
        with override_constants(doc):
            held = [ape(predict_ttft(r), r.measured) for r in test]
        report(f"  held out {_short(model)}", held)
        errors += held
    report(f"{TTFT_CSV}: leave-one-model-out", errors)


def nim_case() -> None:
    """A concurrency sweep: TTFT, ITL and throughput as the closed loop fills and saturates."""
    c = NIM_CASE
    arch, gpu = load_architecture(c["model"]), get_gpu(c["gpu"])
    print(
        f"\nNIM 1.8.0 {_short(c['model'])} {c['precision']} TP{c['tp']} on {c['gpu']}, "
        f"{c['isl']}/{c['osl']} tokens (measured -> predicted, PyTorch backend):"
    )
    print(f"  {'conc':>4} {'TTFT ms':>20} {'ITL ms':>16} {'output tok/s':>20}")
    errs: dict[str, list[float]] = defaultdict(list)
    for conc, ttft, itl, tput in c["rows"]:
        est = estimate(arch, gpu, c["precision"], c["tp"], c["isl"], c["osl"], conc)
        errs["ttft"].append(ape(est.ttft_ms, ttft))
        errs["itl"].append(ape(est.tpot_ms, itl))
        errs["tput"].append(ape(est.throughput_tokens_per_s, tput))
        print(
            f"  {conc:>4} {ttft:>9.0f} -> {est.ttft_ms:>8.0f} {itl:>7.1f} -> {est.tpot_ms:>6.1f} "
            f"{tput:>9.0f} -> {est.throughput_tokens_per_s:>8.0f}"
        )
    sat = estimate(arch, gpu, c["precision"], c["tp"], c["isl"], c["osl"])
    print(f"  predicted KV capacity {sat.max_concurrency} sequences (NIM saturates near 100)")
    report("NIM case: TTFT", errs["ttft"])
    report("NIM case: ITL (TPOT)", errs["itl"])
    report("NIM case: output tokens/s", errs["tput"])


def _online_errors(rows: list[OnlineRow], show: bool) -> dict[str, list[float]]:
    errs: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        est = predict_online(r)
        rate = "INF" if r.qps is None else f"{r.qps:g}"
        kind = "burst" if r.qps is None else "rate"
        ttft_e, itl_e = ape(est.ttft_ms, r.ttft_ms), ape(est.tpot_ms, r.itl_ms)
        errs[f"{kind} ttft"].append(min(ttft_e, 100.0) if math.isfinite(ttft_e) else 100.0)
        errs[f"{kind} itl"].append(min(itl_e, 100.0) if math.isfinite(itl_e) else 100.0)
        if show:
            print(
                f"  {_short(r.model):14} tp{r.tp} {r.isl}/{r.osl} qps {rate:>3}: TTFT "
                f"{r.ttft_ms:6.0f} -> {est.ttft_ms:7.1f} ms, ITL {r.itl_ms:4.0f} -> "
                f"{est.tpot_ms:6.1f} ms" + ("" if est.reason is None else "  (no steady state)")
            )
    return errs


def online_case(cv: bool) -> None:
    """TensorRT-LLM 0.14 online serving (Triton, Poisson arrivals at a fixed QPS, BF16 engines).

    Predicted with the open-loop model (``llmctl size --rps``): requests in flight settle where
    ``n = qps x latency(n)`` and each prefill waits for those queued ahead. A rate the model
    finds unstable counts as 100% off. QPS=INF is a burst of 500 requests; its ITL depends on
    the engine's max batch size, which the table does not give, so it is reported apart.
    """
    rows = load_online_rows(ONLINE_CSV)
    print(
        f"\n{ONLINE_CSV} (Triton + TensorRT engines 0.14, Poisson arrivals; measured -> predicted):"
    )
    errs = _online_errors(rows, True)
    for kind in ("rate", "burst"):
        label = "finite-rate rows" if kind == "rate" else "QPS=INF (burst) rows"
        report(f"{ONLINE_CSV}: {label}: mean TTFT", errs[f"{kind} ttft"])
        report(f"{ONLINE_CSV}: {label}: mean ITL", errs[f"{kind} itl"])
    report(f"{ONLINE_CSV}: all rows: mean TTFT", errs["rate ttft"] + errs["burst ttft"])
    report(f"{ONLINE_CSV}: all rows: mean ITL", errs["rate itl"] + errs["burst itl"])
    if not cv:
        return
    print(f"\n{ONLINE_CSV}: leave one (model, ISL/OSL) sweep out, refit the layer overhead:")
    shipped = load_data("perf_constants.yaml")
    held: dict[str, list[float]] = defaultdict(list)
    for g in sorted({r.group for r in rows}, key=str):
        train = [r for r in rows if r.group != g]
        test = [r for r in rows if r.group == g]
        doc = fit_online(train, copy.deepcopy(shipped))
        with override_constants(doc):
            e = _online_errors(test, False)
        report(f"  held out {_short(g[0])} {g[1]}/{g[2]}", e["rate ttft"] + e["rate itl"])
        for k, v in e.items():
            held[k] += v
    report(f"{ONLINE_CSV}: finite-rate rows, held out: mean TTFT", held["rate ttft"])
    report(f"{ONLINE_CSV}: finite-rate rows, held out: mean ITL", held["rate itl"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="also run the cross-validation")
    parser.add_argument("--iters", type=int, default=150, help="refit iterations per fold")
    parser.add_argument("--rows", action="store_true", help="print every row")
    args = parser.parse_args()

    engine = load_rows(THROUGHPUT_CSV)
    torch = load_rows(PYTORCH_CSV)
    ttft_rows = load_rows(TTFT_CSV)
    print(f"{THROUGHPUT_CSV} (TensorRT engines, TensorRT-LLM 0.17):")
    in_sample(THROUGHPUT_CSV, engine, args.rows)
    print(f"\n{PYTORCH_CSV} (PyTorch backend, TensorRT-LLM 0.19 to 1.2):")
    in_sample(PYTORCH_CSV, torch, args.rows)

    print(f"\n{TTFT_CSV} (batch-1 TTFT, TensorRT-LLM 0.9 engines):")
    t_err = [ape(predict_ttft(r), r.measured) for r in ttft_rows]
    report("batch-1 TTFT", t_err)
    dense = [e for e, r in zip(t_err, ttft_rows, strict=True) if "Mixtral" not in r.model]
    report("batch-1 TTFT, dense models only", dense)

    collapse = [
        r for r in engine if "70B" in r.model and r.tp == 1 and (r.isl, r.osl) == (128, 2048)
    ]
    print("\nLlama-3.1-70B FP8, TP 1, 128/2048 (KV-cache collapse on H100):")
    for r in collapse:
        print(
            f"  {r.gpu:15} measured {r.measured:7.0f} tok/s  predicted "
            f"{predict_throughput(r):7.0f} tok/s"
        )
    online_case(args.cv)
    nim_case()
    if args.cv:
        cross_validate(engine, ttft_rows, torch, args.iters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
