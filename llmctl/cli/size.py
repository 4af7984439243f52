"""``llmctl size``: GPU capacity plan for a blueprint, or one configuration's estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmctl.cli.output import OutputFormat, OutputOption


def register(app: typer.Typer) -> None:
    app.command("size")(size)


def _prices(values: list[str] | None) -> dict[str, float]:
    from llmctl.errors import SizingError

    prices: dict[str, float] = {}
    for item in values or []:
        name, sep, usd = item.partition("=")
        try:
            prices[name] = float(usd)
        except ValueError:
            sep = ""
        if not sep:
            raise SizingError(f"--price expects NAME=USD_PER_GPU_HOUR, got {item!r}")
    return prices


def size(
    blueprint: Annotated[
        Path | None,
        typer.Argument(help="Blueprint to plan capacity for.", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model: Hugging Face id, bundled name or path to a config.json."),
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU name or alias, e.g. H100, L40S.")] = None,
    precision: Annotated[
        str, typer.Option(help="fp16, bf16, fp8, fp4 (NVFP4, Blackwell), int8_wo or int4_awq.")
    ] = "bf16",
    tp: Annotated[int, typer.Option(help="Tensor-parallel GPUs per replica.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel stages per replica.")] = 1,
    ep: Annotated[
        int, typer.Option(help="Expert-parallel GPUs (attention data parallel, MoE models).")
    ] = 1,
    backend: Annotated[
        str, typer.Option(help="TensorRT-LLM execution backend: pytorch or tensorrt (engines).")
    ] = "pytorch",
    isl: Annotated[int, typer.Option(help="Input tokens per request.")] = 2048,
    osl: Annotated[int, typer.Option(help="Output tokens per request.")] = 512,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Concurrent requests (closed loop); omit for saturated throughput."),
    ] = None,
    rps: Annotated[
        float | None,
        typer.Option(
            "--rps",
            help="Open loop: Poisson arrivals at this many requests/s; predicts mean and p95 "
            "TTFT and latency with queueing (exclusive with --concurrency).",
        ),
    ] = None,
    kv_fraction: Annotated[
        float | None,
        typer.Option(help="Share of free GPU memory for the KV cache (default 0.9)."),
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(help="Override an indicative price: NAME=USD per GPU-hour (repeatable)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Write cost against capacity to this PNG (plans only).")
    ] = None,
    list_gpus: Annotated[
        bool, typer.Option("--list-gpus", help="Print the GPU catalogue and exit.")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Size GPUs: with a BLUEPRINT, the cheapest configuration meeting its SLOs; with --model
    and --gpu, memory fit, throughput, TTFT, TPOT and latency of one configuration, at
    saturation, for --concurrency requests in flight, or for --rps arrivals per second."""
    from llmctl.errors import SizingError
    from llmctl.sizing import report

    json_out = output is OutputFormat.json
    if list_gpus:
        from llmctl.sizing import list_gpus as catalogue

        report.render_gpus(catalogue(_prices(price)), json_out)
        return
    if blueprint is not None:
        from dataclasses import replace

        from llmctl.blueprint import load_blueprint
        from llmctl.sizing import plan, request_from_blueprint
        from llmctl.sizing.growth import with_growth

        bp = load_blueprint(blueprint)
        request = request_from_blueprint(bp)
        if price:
            request = replace(request, gpu_prices={**request.gpu_prices, **_prices(price)})
        result = with_growth(plan(request), bp)
        if plot is not None:
            report.plot_plan(result, plot)
        from llmctl.training.history import for_blueprint, hours_lines

        training = for_blueprint(bp)  # measured training hours beside the estimate, once run
        if json_out:
            if training is None:
                typer.echo(report.to_json(result))
            else:
                import json

                typer.echo(
                    json.dumps(
                        {**json.loads(report.to_json(result)), "training_hours": training}, indent=2
                    )
                )
        else:
            report.render_plan(result)
            for line in hours_lines(training) if training else []:
                typer.echo(line)
        return
    if model is None or gpu is None:
        raise SizingError("give a BLUEPRINT, or --model and --gpu for a single configuration")
    if plot is not None:
        raise SizingError("--plot draws a capacity plan: give a BLUEPRINT")
    from llmctl.sizing import estimate, get_gpu, load_architecture

    arch, device = load_architecture(model), get_gpu(gpu, _prices(price))
    if rps is not None:
        if concurrency is not None:
            raise SizingError("give --rps (open loop) or --concurrency (closed loop), not both")
        from llmctl.sizing.openloop import estimate_rate

        est = estimate_rate(
            arch, device, precision, tp, isl, osl, rps, kv_fraction, pp=pp, ep=ep, backend=backend
        )
    else:
        est = estimate(
            arch,
            device,
            precision,
            tp,
            isl,
            osl,
            concurrency=concurrency,
            kv_fraction=kv_fraction,
            pp=pp,
            ep=ep,
            backend=backend,
        )
    if json_out:
        typer.echo(report.to_json(est))
    else:
        report.render_estimate(est)
