"""``llmctl init``: write a starter blueprint that passes ``llmctl check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    name: Annotated[str, typer.Argument(help="Service name (lowercase letters, digits and '-').")],
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Folder to write NAME.yaml into.")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write NAME.yaml, a starter blueprint with an editor schema modeline; it passes check."""
    from llmctl.starter import write_starter

    path = write_starter(name, directory, force=force)
    typer.echo(f"wrote {path}; next: llmctl check {path}")
