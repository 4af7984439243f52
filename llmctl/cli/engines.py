"""``llmctl engines list|gc``: show and prune the TensorRT-LLM engine cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llmctl.cli.options import OutputFormat as Output
from llmctl.cli.options import OutputOption as OutputOpt

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


def register(app: typer.Typer) -> None:
    app.add_typer(engines_app, name="engines")
