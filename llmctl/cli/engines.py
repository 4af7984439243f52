"""``llmctl engines list|gc``: show and prune the TensorRT-LLM engine cache."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from llmctl.engine.build import BuildResult


class Output(StrEnum):
    text = "text"
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="text for people, json for tools.")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache",
        help="Engine cache folder (default: $LLMCTL_ENGINE_CACHE or $LLMCTL_CACHE/engines).",
    ),
]

engines_app = typer.Typer(
    help="Show and prune the TensorRT-LLM engine cache.", no_args_is_help=True
)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@engines_app.command("list")
def list_engines(
    output: OutputOpt = Output.text,
    cache: CacheOpt = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash every file (slow for large engines).")
    ] = False,
) -> None:
    """List cached engines, most recently used first, with their state (ok, corrupt, partial)."""
    from llmctl.engine.cache import EngineCache

    c = EngineCache(cache)
    rows = c.entries(full=verify)
    if output is Output.json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        typer.echo(f"no engines in {c.root}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("engine", "state", "model", "arch", "size", "built", "detail")
    for r in rows:
        table.add_row(
            r.key,
            r.state,
            r.model or "-",
            r.gpu_arch or "-",
            _size(r.size_bytes),
            r.created or "-",
            r.detail,
        )
    Console(highlight=False).print(table)


@engines_app.command("gc")
def gc(
    keep: Annotated[
        int, typer.Option("--keep", help="How many of the most recently used engines to keep.")
    ],
    output: OutputOpt = Output.text,
    cache: CacheOpt = None,
) -> None:
    """Remove all but the N most recently used engines, and any partial or corrupt ones."""
    from llmctl.engine.cache import EngineCache

    removed = EngineCache(cache).gc(keep)
    if output is Output.json:
        typer.echo(json.dumps([r.to_dict() for r in removed], indent=2))
        return
    for r in removed:
        typer.echo(f"removed {r.key} ({r.state}, {_size(r.size_bytes)})")
    typer.echo(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}")


def show_build_result(result: BuildResult, output: str = "text") -> None:
    """Print a production ``BuildResult`` (for ``llmctl build --target <kubernetes target>``).

    Lives here so ``cli/stack.py`` only dispatches: ``show_build_result(build_production(...), output)``.
    """
    if output == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    spec = result.spec
    typer.echo(f"engine {result.key} for target {result.target!r}")
    typer.echo(
        f"  model     {spec.model_id} ({spec.checkpoint.source}: {spec.checkpoint.revision or spec.checkpoint.ref})"
    )
    typer.echo(
        f"  gpu       {spec.gpu} ({spec.gpu_arch}), TP {spec.tp} x PP {spec.pp}, TensorRT-LLM {spec.tensorrt_llm}"
    )
    typer.echo(
        f"  precision {spec.dtype}, quantisation {spec.quantization}, kv cache {spec.kv_cache_dtype or spec.dtype}"
    )
    typer.echo(
        f"  limits    batch {spec.max_batch_size}, input {spec.max_input_len}, sequence {spec.max_seq_len}, "
        f"tokens/step {spec.max_num_tokens}, beams {spec.max_beam_width}"
    )
    for note in spec.notes:
        typer.echo(f"  note      {note}")
    if result.dry_run:
        typer.echo("steps (not run):")
        for i, step in enumerate(result.steps, 1):
            typer.echo(f"  {i}. {step.name}: {step.description}")
            typer.echo(f"     {step.display()}")
        return
    if result.job_path is not None:
        typer.echo(f"wrote the build Job to {result.job_path} (kubectl apply -f {result.job_path})")
        return
    state = "built" if result.built else "unchanged (found in the cache)"
    if result.engine is not None:
        typer.echo(f"engine    {state}: {result.engine.engine_dir}")
    if result.repository is not None:
        typer.echo(f"repository {result.repository.path}")


def register(app: typer.Typer) -> None:
    app.add_typer(engines_app, name="engines")
