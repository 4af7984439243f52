"""``llmctl check``: validate blueprints (schema and semantic rules)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def register(app: typer.Typer) -> None:
    app.command("check")(check)


def check(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Blueprint files to check.", show_default=False, metavar="BLUEPRINT..."
        ),
    ],
    fmt: Annotated[
        CheckFormat,
        typer.Option(
            "--format", "-f", help="text, json, or github (CI annotations).", case_sensitive=False
        ),
    ] = CheckFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
) -> None:
    """Check blueprints against the schema and the semantic rules; exit 1 on any error."""
    import json
    import sys

    from llmctl.blueprint import check_file
    from llmctl.blueprint.problems import format_problems

    results = [check_file(f) for f in files]
    problems = [p for r in results for p in r.problems]
    failed = any(not r.ok(strict) for r in results)
    if fmt is CheckFormat.json:
        out = [
            {
                "file": r.file,
                "ok": r.ok(strict),
                "errors": len(r.errors),
                "warnings": len(r.warnings),
                "problems": [p.to_dict() for p in sorted(r.problems)],
            }
            for r in results
        ]
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    elif fmt is CheckFormat.github:
        if problems:
            sys.stdout.write(format_problems(problems, "github") + "\n")
    else:
        if problems:
            sys.stdout.write(format_problems(problems, "text") + "\n")
        for r in results:
            if r.ok(strict) and not r.problems:
                sys.stdout.write(f"{r.file}: ok\n")
        errors = sum(len(r.errors) for r in results)
        warnings = sum(len(r.warnings) for r in results)
        if problems:
            sys.stderr.write(
                f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
                f"in {len(files)} file{'s' * (len(files) != 1)}\n"
            )
    raise typer.Exit(1 if failed else 0)
