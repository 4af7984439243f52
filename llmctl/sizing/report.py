"""Rendering estimates and plans for people (rich tables), tools (JSON) and slides (a plot).

rich and matplotlib are imported inside the functions: the planner itself never needs them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from llmctl.sizing.catalogue import Gpu
from llmctl.sizing.performance import Estimate
from llmctl.sizing.planner import CapacityPlan


def json_safe(value: Any) -> Any:
    """Replace infinities (a configuration that does not fit) by null: JSON has no Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_json(obj: Estimate | CapacityPlan) -> str:
    return json.dumps(json_safe(obj.to_dict()), indent=2)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def render_gpus(gpus: list[Gpu], as_json: bool = False) -> None:
    """The catalogue, so that a blueprint author can pick a name (prices are indicative)."""
    rows: list[dict[str, Any]] = [
        {
            "name": g.name,
            "aliases": list(g.aliases),
            "memory_gib": round(g.memory_mib / 1024, 1),
            "bandwidth_gbs": g.bandwidth_gbs,
            "tflops": g.tflops,
            "precisions": list(g.precisions),
            "interconnect": g.link,
            "max_tp": g.max_tp,
            "price_per_hour": g.price_per_hour,
        }
        for g in gpus
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="GPU catalogue (indicative USD per GPU-hour)", title_justify="left")
    for col in ("GPU", "GiB", "GB/s", "TFLOPS 16/8", "link", "$/h"):
        table.add_column(col, justify="left" if col in {"GPU", "link"} else "right")
    for r in rows:
        tf = r["tflops"]
        table.add_row(
            str(r["name"]),
            f"{r['memory_gib']:.1f}",
            f"{r['bandwidth_gbs']:,.0f}",
            f"{tf['fp16']:,.0f}/" + (f"{tf['fp8']:,.0f}" if "fp8" in tf else "-"),
            str(r["interconnect"]),
            f"{r['price_per_hour']:.2f}",
        )
    _console().print(table)


def render_estimate(est: Estimate) -> None:
    from rich.table import Table

    console = _console()
    layout = (
        f"TP{est.tp}"
        + (f" PP{est.pp}" if est.pp > 1 else "")
        + (f" EP{est.ep}" if est.ep > 1 else "")
    )
    title = (
        f"{est.model} on {est.tp * est.pp} x {est.gpu} ({layout}) at {est.precision}, "
        f"{est.isl}+{est.osl} tokens, TensorRT-LLM {est.backend} backend"
    )
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    mem = est.memory
    table.add_row("fits", "yes" if est.fits else f"[red]no[/red]: {est.reason}")
    table.add_row(
        "weights per GPU", f"{mem.weights_gb_per_gpu:.2f} GB of {mem.memory_gb_per_gpu:.1f} GB"
    )
    table.add_row("runtime reserve per GPU", f"{mem.reserve_gb_per_gpu:.2f} GB")
    table.add_row(
        "KV cache per GPU", f"{mem.kv_pool_gb_per_gpu:.2f} GB ({mem.kv_fraction:.0%} of free)"
    )
    table.add_row("KV bytes / token / GPU", f"{est.kv_bytes_per_token_per_gpu:,.0f}")
    table.add_row("KV cache tokens", f"{est.kv_cache_tokens:,}")
    table.add_row("max concurrent sequences", f"{est.max_concurrency:,}")
    if est.fits and est.rate_per_s is not None:
        _rate_rows(table, est)
    elif est.fits:
        load = (
            "saturated (max throughput)" if est.concurrency is None else f"{est.concurrency} users"
        )
        table.add_row("load", f"{load}, batch {est.batch}")
        table.add_row("throughput", f"{est.throughput_tokens_per_s:,.0f} output tok/s")
        table.add_row("TTFT", f"{est.ttft_ms:,.1f} ms")
        table.add_row("TPOT", f"{est.tpot_ms:,.2f} ms")
        table.add_row("latency", f"{est.latency_ms:,.0f} ms")
        table.add_row("bound by", est.bound)
    console.print(table)


def _rate_rows(table: Any, est: Estimate) -> None:
    """An open-loop estimate: the arrival rate, what it settles at, or why it cannot."""
    table.add_row("load", f"{est.rate_per_s:g} requests/s, Poisson arrivals (open loop)")
    if est.reason is not None:
        table.add_row("steady state", f"[red]none[/red]: {est.reason}")
        return
    table.add_row(
        "requests in flight",
        f"{est.in_flight:,.1f} on average = {est.rate_per_s:g}/s x {est.latency_ms / 1e3:,.2f} s "
        "(Little's law)",
    )
    table.add_row("throughput", f"{est.throughput_tokens_per_s:,.0f} output tok/s")
    table.add_row("TTFT mean / p95", f"{est.ttft_ms:,.1f} / {est.ttft_p95_ms:,.1f} ms")
    table.add_row("TPOT (mean ITL)", f"{est.tpot_ms:,.2f} ms")
    table.add_row("latency mean / p95", f"{est.latency_ms:,.0f} / {est.latency_p95_ms:,.0f} ms")
    table.add_row("bound by", est.bound)


def render_plan(result: CapacityPlan, top: int = 8) -> None:
    from rich.table import Table

    console = _console()
    req = result.request
    c = result.chosen
    load = (
        f"{req.design_rate(c.latency_ms / 1e3):.3g} requests/s (open loop, peak + "
        f"{req.headroom:.0%})"
        if req.is_rate
        else f"{req.design_concurrency} requests in flight (peak {req.peak_concurrency} + "
        f"{req.headroom:.0%})"
    )
    console.print(
        f"[bold]{req.model}[/bold]: {load}, {req.isl}+{req.osl} tokens, "
        f"LLM budget TTFT p95 {req.llm_ttft_budget_ms:g} ms / latency p95 "
        f"{req.llm_latency_budget_ms:g} ms after {req.retrieval_budget_ms:g} ms retrieval"
    )
    if result.derivation:
        console.print("[bold]load derivation[/bold]")
        for line in result.derivation:
            console.print(f"  - {line}")
    console.print(
        f"[bold green]chosen[/bold green]: {c.replicas} x {c.tp} x {c.gpu}"
        f"{f' (EP {c.ep})' if c.ep > 1 else ''} ({c.gpus_total} GPUs) "
        f"at {c.precision}, max batch {c.max_batch_size}, ${c.monthly_cost_usd:,.0f}/month; "
        f"TTFT p95 {c.ttft_p95_ms:,.0f} ms, latency p95 {c.latency_p95_ms:,.0f} ms, "
        f"TPOT {c.tpot_ms:.1f} ms, capacity "
        + (
            f"{c.capacity_rate_per_s:.3g} requests/s"
            if req.is_rate
            else f"{c.capacity_concurrency} concurrent"
        )
    )
    table = Table(title="cheapest configurations meeting every SLO", title_justify="left")
    cols = ("GPU", "prec", "TP", "repl", "batch", "TTFT95", "lat95", "TPOT", "users", "$/mo")
    for col in cols:
        table.add_column(col, justify="left" if col in {"GPU", "prec"} else "right")
    for cand in result.candidates[:top]:
        table.add_row(
            cand.gpu,
            cand.precision,
            str(cand.tp) + (f" ep{cand.ep}" if cand.ep > 1 else ""),
            str(cand.replicas),
            str(cand.max_batch_size),
            f"{cand.ttft_p95_ms:,.0f}ms",
            f"{cand.latency_p95_ms / 1e3:,.1f}s",
            f"{cand.tpot_ms:.1f}ms",
            str(cand.capacity_concurrency),
            f"{cand.monthly_cost_usd:,.0f}",
        )
    console.print(table)
    if result.rejected:
        rej = Table(title="rejected", title_justify="left")
        for col in ("GPU", "prec", "TP", "why", "detail"):
            rej.add_column(col)
        shown = sorted(result.rejected, key=lambda r: r.shortfall)[: top * 2]
        for r in shown:
            layout = str(r.tp or "-") + (f" ep{r.ep}" if r.ep > 1 else "")
            rej.add_row(r.gpu, r.precision, layout, r.category, r.reason)
        console.print(rej)
        if len(result.rejected) > len(shown):
            console.print(
                f"  ... and {len(result.rejected) - len(shown)} more further off "
                "(--output json lists all)"
            )
    for w in result.warnings:
        console.print(f"[bold yellow]warning[/bold yellow]: {w}")
    if result.growth:
        _render_growth(console, result)
    console.print("[bold]assumptions[/bold]")
    for a in result.assumptions:
        console.print(f"  - {a}")


def _render_growth(console: Any, result: CapacityPlan) -> None:
    """The scaling plan: one row per phase, today first, cost against each phase's budget."""
    from rich.table import Table

    table = Table(title="growth plan (cheapest configuration per phase)", title_justify="left")
    for col in ("phase", "in flight", "configuration", "$/mo", "budget", "verdict"):
        table.add_column(col, justify="right" if col in {"in flight", "$/mo", "budget"} else "left")
    c, req = result.chosen, result.request
    budget = f"{req.monthly_budget_usd:,.0f}" if req.monthly_budget_usd else "-"
    from llmctl.sizing.growth import in_flight

    table.add_row(
        "today",
        str(in_flight(req, c)),
        f"{c.replicas} x TP{c.tp} {c.gpu} {c.precision}",
        f"{c.monthly_cost_usd:,.0f}",
        budget,
        "within budget",
    )
    for g in result.growth:
        if g.chosen is None:
            table.add_row(g.name, str(g.in_flight), "none meets the SLOs", "-", "-", g.error or "")
            continue
        over = g.within_budget
        verdict = (
            "no budget given"
            if over is None
            else "within budget"
            if over
            else (f"over budget x{g.chosen.monthly_cost_usd / (g.monthly_budget_usd or 1):.1f}")
        )
        table.add_row(
            g.name + (f" ({g.after})" if g.after else ""),
            str(g.in_flight),
            f"{g.chosen.replicas} x TP{g.chosen.tp} {g.chosen.gpu} {g.chosen.precision}",
            f"{g.chosen.monthly_cost_usd:,.0f}",
            f"{g.monthly_budget_usd:,.0f}" if g.monthly_budget_usd else "-",
            verdict,
        )
    console.print(table)
    for g in result.growth:
        console.print(f"  {g.name}: {g.load_basis}")


def plot_plan(result: CapacityPlan, path: str | Path) -> Path:
    """Monthly cost against SLO-compliant capacity for every candidate (PNG)."""
    try:
        import matplotlib
    except ImportError as exc:  # an optional dependency (the "gates" extra)
        from llmctl.errors import SizingError

        raise SizingError("--plot needs matplotlib: pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    by_gpu: dict[str, list[Any]] = {}
    for cand in result.candidates:
        by_gpu.setdefault(cand.gpu, []).append(cand)
    for gpu, cands in sorted(by_gpu.items()):
        ax.scatter(
            [c.capacity_concurrency for c in cands],
            [c.monthly_cost_usd for c in cands],
            label=gpu,
            alpha=0.8,
        )
        for c in cands:
            ax.annotate(
                f"{c.replicas}x{c.tp} {c.precision}",
                (c.capacity_concurrency, c.monthly_cost_usd),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    chosen = result.chosen
    ax.scatter(
        [chosen.capacity_concurrency],
        [chosen.monthly_cost_usd],
        s=200,
        facecolors="none",
        edgecolors="black",
        label="chosen",
    )
    ax.axvline(
        result.request.design_concurrency,
        linestyle="--",
        color="grey",
        label="required concurrency",
    )
    if result.request.monthly_budget_usd:
        ax.axhline(result.request.monthly_budget_usd, linestyle=":", color="red", label="budget")
    ax.set_xlabel("concurrent requests served within the SLOs")
    ax.set_ylabel("USD per month (indicative)")
    ax.set_title(f"{result.request.model}: cost against capacity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
