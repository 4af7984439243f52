"""Reports of a verify run: ``verify.json`` (every figure) and ``index.html`` for people.

The HTML report has the gate summary, a latency histogram and percentiles over time (PNG files
drawn with matplotlib's Agg backend, imported only here so ``llmctl check`` stays fast), and the
requirement-to-evidence table of the compliance gate. The page is the jinja2 template
``templates/report.html.j2`` (shipped as package data), rendered with autoescape on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmctl.gates.results import VerifyResult


def training_hours(result: VerifyResult) -> dict[str, Any] | None:
    """The blueprint's last training run's measured hours against its estimate (None: no
    training section or no run yet), so the release report carries the operator's hand-back."""
    from llmctl.training.history import for_blueprint

    try:
        from llmctl.blueprint import load_blueprint

        bp = load_blueprint(result.blueprint_path)
    except Exception:  # a report is still written when the file moved since the run
        return None
    return for_blueprint(bp)


def write_json(result: VerifyResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = result.to_dict()
    hours = training_hours(result)
    if hours is not None:
        doc["training_hours"] = hours
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _percentile_series(
    samples: Sequence[dict[str, Any]], kind: str, window_s: float
) -> dict[str, list[float]]:
    from llmctl.gates.load import percentile

    rows = [s for s in samples if s["kind"] == kind and s.get("ok")]
    if not rows:
        return {"t": [], "p50": [], "p95": []}
    end = max(s["t"] for s in rows)
    out: dict[str, list[float]] = {"t": [], "p50": [], "p95": []}
    t = window_s
    while t <= end + window_s:
        win = [s["ms"] for s in rows if t - window_s < s["t"] <= t]
        if win:
            out["t"].append(t)
            out["p50"].append(percentile(win, 0.5) or 0.0)
            out["p95"].append(percentile(win, 0.95) or 0.0)
        t += window_s
    return out


def plot_load(samples: Sequence[dict[str, Any]], out_dir: Path, duration_s: float) -> list[Path]:
    """latency-histogram.png and latency-over-time.png; nothing when there are no samples."""
    asks = [s["ms"] for s in samples if s["kind"] == "ASK" and s.get("ok")]
    ttft = [s["ms"] for s in samples if s["kind"] == "TTFT" and s.get("ok")]
    if not asks:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(
        [a / 1e3 for a in asks], bins=min(30, max(5, len(asks) // 2)), alpha=0.7, label="end-to-end"
    )
    if ttft:
        ax.hist(
            [t / 1e3 for t in ttft],
            bins=min(30, max(5, len(ttft) // 2)),
            alpha=0.7,
            label="time to first token",
        )
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests")
    ax.set_title("Latency distribution")
    ax.legend()
    fig.tight_layout()
    p = out_dir / "latency-histogram.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)

    window = max(2.0, duration_s / 15)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind, label in (("ASK", "end-to-end"), ("TTFT", "TTFT")):
        series = _percentile_series(samples, kind, window)
        if series["t"]:
            ax.plot(series["t"], [v / 1e3 for v in series["p50"]], marker="o", label=f"{label} p50")
            ax.plot(series["t"], [v / 1e3 for v in series["p95"]], marker="x", label=f"{label} p95")
    ax.set_xlabel(f"seconds into the run ({window:g} s windows)")
    ax.set_ylabel("seconds")
    ax.set_title("Percentiles over time")
    ax.legend(fontsize="small")
    fig.tight_layout()
    p = out_dir / "latency-over-time.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths


#: The gates whose checks get a table of their own (compliance has the requirements table).
CHECK_TABLES = ("quality", "smoke", "check", "load")


def _fmt(v: Any) -> Any:
    """How the report prints a figure: floats with 4 significant digits, None as nothing."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else v


@lru_cache(maxsize=1)
def _template() -> Any:
    """``templates/report.html.j2`` from the installed package (jinja2 imported only here)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmctl.gates", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        finalize=_fmt,
    )
    return env.get_template("report.html.j2")


def _load_rows(f: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The load table: figure, value, threshold."""
    thr = f.get("thresholds", {})
    e = _fmt
    return [
        (
            "users / spawn rate / duration",
            f"{f.get('users')} / {f.get('spawn_rate')} / {f.get('duration_s')} s",
            "",
        ),
        ("requests (failures)", f"{f.get('requests')} ({f.get('failures')})", ""),
        ("error rate", f.get("error_rate"), f"≤ {thr.get('max_error_rate')}"),
        ("throughput req/s", f.get("throughput_rps"), f"≥ {thr.get('min_throughput_rps')}"),
        (
            "latency p50 / p95 / p99 ms",
            f"{e(f.get('p50_latency_ms'))} / {e(f.get('p95_latency_ms'))} / {e(f.get('p99_latency_ms'))}",
            f"p95 ≤ {thr.get('p95_latency_ms')}",
        ),
        (
            "TTFT p50 / p95 ms",
            f"{e(f.get('p50_ttft_ms'))} / {e(f.get('p95_ttft_ms'))}",
            f"p95 ≤ {thr.get('p95_ttft_ms')}",
        ),
        (
            "inter-token latency p50 / p95 ms",
            f"{e(f.get('p50_itl_ms'))} / {e(f.get('p95_itl_ms'))}",
            "",
        ),
        ("output tokens/s (mean)", f.get("mean_output_tps"), ""),
    ]


def write_html(result: VerifyResult, path: Path, images: Sequence[Path] = ()) -> Path:
    """``index.html``: gates, load figures and plots, each gate's checks, requirements."""
    load = result.gate("load")
    has_load = load is not None and bool(load.figures)
    comp = result.gate("compliance")
    page = _template().render(
        result=result,
        verdict="PASSED" if result.ok else "FAILED: " + ", ".join(result.failed),
        load_rows=_load_rows(load.figures) if load is not None and has_load else [],
        images=list(images) if has_load else [],
        check_gates=[g for g in result.gates if g.name in CHECK_TABLES and g.checks],
        compliance_checks=comp.checks if comp is not None else [],
        training_lines=_training_lines(result),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _training_lines(result: VerifyResult) -> list[str]:
    from llmctl.training.history import hours_lines

    hours = training_hours(result)
    return hours_lines(hours) if hours is not None else []


def write_reports(
    result: VerifyResult, out_dir: Path, samples: Sequence[dict[str, Any]] = ()
) -> dict[str, Path]:
    """verify.json, index.html and the PNG plots in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    load = result.gate("load")
    duration = float((load.figures.get("duration_s") if load else 0) or 0)
    images = plot_load(samples, out_dir, duration) if samples else []
    paths = {
        "json": write_json(result, out_dir / "verify.json"),
        "html": write_html(result, out_dir / "index.html", images),
    }
    for img in images:
        paths[img.stem] = img
    return paths
