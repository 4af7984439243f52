"""Arguments and options every verb spells the same way (``-o`` is always ``--output``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmctl.cli.output import OutputFormat, OutputOption

__all__ = ["BlueprintArg", "OutputFormat", "OutputOption", "TargetOpt", "YesOpt"]

BlueprintArg = Annotated[
    Path, typer.Argument(help="The blueprint YAML file.", exists=False, dir_okay=False)
]
TargetOpt = Annotated[
    str, typer.Option("--target", "-t", help="Which of the blueprint's targets (default: local).")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")]
