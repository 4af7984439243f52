"""Shared rendering for the CLI: one console, JSON output, and the --output option."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="text for people, json for tools.", case_sensitive=False),
]


def console(stderr: bool = False) -> Any:
    """A rich console, imported lazily (rich costs ~50 ms at start, not worth it for JSON)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def emit(result: Any, output: OutputFormat) -> None:
    """Print a core result: its ``to_dict()`` as JSON, or its ``summary()`` lines as text."""
    if output is OutputFormat.json:
        print_json(result.to_dict())
        return
    out = console()
    for line in result.summary():
        out.print(line, markup=False)
