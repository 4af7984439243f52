"""``llmctl runbook``: the on-call runbook of a blueprint's target, in Markdown.

The content is ``llmctl.ops.runbook``'s; this verb only writes it to a file or prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmctl.cli.options import BlueprintArg, TargetOpt
from llmctl.errors import LlmctlError


def runbook(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    out: Annotated[
        Path | None,
        # --out like `llmctl render --out`; -o means --output (the format) in every verb
        typer.Option("--out", help="Write the Markdown here (folders created); default: stdout."),
    ] = None,
) -> None:
    """Write the on-call runbook: endpoints, SLOs and error budgets, every alert with what to
    check and do, rollback, restore, and the data obligations."""
    from llmctl.blueprint import load_blueprint
    from llmctl.ops.runbook import render_runbook

    text = render_runbook(load_blueprint(blueprint), target)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LlmctlError(f"{out}: cannot write the runbook: {exc.strerror or exc}") from None
    typer.echo(f"wrote {out}", err=True)


def register(app: typer.Typer) -> None:
    app.command("runbook")(runbook)
