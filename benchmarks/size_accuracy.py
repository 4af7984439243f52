"""Error of `llmctl size` against published TensorRT-LLM measurements.

    python benchmarks/size_accuracy.py          # per-row table, in-sample summary, TTFT
    python benchmarks/size_accuracy.py --cv     # + leave-one-GPU/model/TP-out cross-validation

In-sample uses the shipped llmctl/data/perf_constants.yaml. Cross-validation refits the
constants (benchmarks/fit_sizing.py's procedure, from the same priors) without the held-out
group and predicts it: the honest number for GPUs, models and shapes the fit never saw.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmctl.sizing.calibration import (  # noqa: E402
    THROUGHPUT_CSV,
    TTFT_CSV,
    Row,
    ape,
    load_rows,
    predict_throughput,
    predict_ttft,
    summary,
)
from llmctl.sizing.constants import override_constants  # noqa: E402
from llmctl.sizing.fitting import fit_constants  # noqa: E402


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1].replace("-Instruct", "")


def table(rows: list[Row]) -> list[float]:
    print(
        f"{'model':22} {'gpu':15} {'tp':>2} {'isl':>5} {'osl':>5} "
        f"{'measured':>9} {'predicted':>9} {'ratio':>6} {'APE%':>6}"
    )
    errors = []
    for r in rows:
        p = predict_throughput(r)
        e = ape(p, r.measured)
        errors.append(e)
        print(
            f"{_short(r.model):22} {r.gpu:15} {r.tp:>2} {r.isl:>5} {r.osl:>5} "
            f"{r.measured:>9.0f} {p:>9.0f} {p / r.measured:>6.2f} {e:>6.1f}"
        )
    return errors


def report(label: str, errors: list[float], ratios: list[float] | None = None) -> None:
    med, p90 = summary(errors)
    worst = max(errors) if errors else 0.0
    extra = ""
    if ratios:
        extra = f", worst ratio {max(max(ratios), 1 / min(ratios)):.2f}x"
    print(
        f"{label:44} n={len(errors):3}  median APE {med:5.1f}%  p90 {p90:5.1f}%  "
        f"max {worst:5.1f}%{extra}"
    )


def cross_validate(
    rows: list[Row], ttft_rows: list[Row], key: Callable[[Row], object], name: str, iters: int
) -> None:
    groups = sorted({key(r) for r in rows}, key=str)
    all_err: list[float] = []
    all_ratio: list[float] = []
    for g in groups:
        train = [r for r in rows if key(r) != g]
        test = [r for r in rows if key(r) == g]
        doc = fit_constants(train, ttft_rows, iters=iters)
        with override_constants(doc):
            preds = [predict_throughput(r) for r in test]
        err = [ape(p, r.measured) for p, r in zip(preds, test, strict=True)]
        ratio = [p / r.measured for p, r in zip(preds, test, strict=True)]
        report(f"  held out {name} = {g}", err, ratio)
        all_err += err
        all_ratio += ratio
    report(f"leave-one-{name}-out (all held-out rows)", all_err, all_ratio)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", action="store_true", help="also run the cross-validation")
    parser.add_argument("--iters", type=int, default=300, help="refit iterations per fold")
    parser.add_argument("--quiet", action="store_true", help="summaries only")
    args = parser.parse_args()

    rows = load_rows(THROUGHPUT_CSV)
    ttft_rows = load_rows(TTFT_CSV)
    if args.quiet:
        errors = [ape(predict_throughput(r), r.measured) for r in rows]
    else:
        errors = table(rows)
    ratios = [predict_throughput(r) / r.measured for r in rows]
    print()
    report("saturated throughput, in-sample", errors, ratios)

    print("\nbatch-1 TTFT (TensorRT-LLM 0.9, a different engine version):")
    t_err = []
    for r in ttft_rows:
        p = predict_ttft(r)
        t_err.append(ape(p, r.measured))
        if not args.quiet:
            print(
                f"  {_short(r.model):18} {r.gpu:15} tp{r.tp} isl {r.isl:5}  measured "
                f"{r.measured:6.1f} ms  predicted {p:6.1f} ms"
            )
    report("batch-1 TTFT", t_err)
    dense = [e for e, r in zip(t_err, ttft_rows, strict=True) if "Mixtral" not in r.model]
    report("batch-1 TTFT, dense models only", dense)

    collapse = [r for r in rows if "70B" in r.model and r.tp == 1 and (r.isl, r.osl) == (128, 2048)]
    print("\nLlama-3.1-70B FP8, TP 1, 128/2048 (KV-cache collapse on H100):")
    for r in collapse:
        print(
            f"  {r.gpu:15} measured {r.measured:7.0f} tok/s  predicted "
            f"{predict_throughput(r):7.0f} tok/s"
        )

    if args.cv:
        print("\ncross-validation (constants refitted without the held-out group):")
        cross_validate(rows, ttft_rows, lambda r: r.gpu, "GPU", args.iters)
        cross_validate(rows, ttft_rows, lambda r: _short(r.model), "model", args.iters)
        cross_validate(rows, ttft_rows, lambda r: r.tp, "TP", args.iters)
        cross_validate(rows, ttft_rows, lambda r: (r.isl, r.osl), "shape", args.iters)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
