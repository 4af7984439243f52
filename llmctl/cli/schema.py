"""``llmctl schema``: print the blueprint JSON Schema (for editors and tools)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


def schema() -> None:
    """Print the blueprint JSON Schema (2020-12) to standard output."""
    import json
    import sys

    from llmctl.blueprint.schema import load_schema

    sys.stdout.write(json.dumps(load_schema(), indent=2) + "\n")
