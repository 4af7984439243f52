"""``llmctl backup`` and ``llmctl restore``: a local stack's index, audit trail, model manifest
and config to a folder and back (``llmctl.ops.backup`` does the work and says why it works so).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption, TargetOpt, YesOpt
from llmctl.cli.output import emit
from llmctl.errors import LlmctlError


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    blueprint: BlueprintArg,
    to: Annotated[str, typer.Option("--to", help="A new or empty folder (a path or file:// URI).")],
    target: TargetOpt = "local",
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Also copy the dev signing key and the question key ring (0600); left out by "
            "default, because with the keys anyone holding the backup can test guesses against "
            "the trail.",
        ),
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Back up the stack's index, audit trail, model manifest and config, with a MANIFEST.json
    of hashes; runs while the stack serves."""
    from llmctl.blueprint import load_blueprint
    from llmctl.ops.backup import backup as run_backup

    emit(run_backup(load_blueprint(blueprint), target, to, include_secrets=include_secrets), output)


def restore(
    blueprint: BlueprintArg,
    source: Annotated[
        str, typer.Option("--from", help="The backup folder (a path or file:// URI).")
    ],
    target: TargetOpt = "local",
    yes: YesOpt = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Restore a backup into a stopped target with no index or audit trail; every hash is
    checked first, and `llmctl up` then serves the restored index."""
    from llmctl.blueprint import load_blueprint
    from llmctl.ops.backup import restore as run_restore

    bp = load_blueprint(blueprint)
    if not yes and output is OutputFormat.json:
        raise LlmctlError("--output json needs -y (there is no one to answer the question)")

    def ask(manifest: dict[str, Any]) -> None:  # after the hashes checked out, before writing
        taken = manifest.get("created") or "?"
        typer.confirm(f"restore {source} (taken {taken}) into {bp.name} ({target})?", abort=True)

    emit(run_restore(bp, target, source, confirm=None if yes else ask), output)
