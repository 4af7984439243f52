"""``llmctl check``: validate blueprints (schema and semantic rules).

``run_check`` does the work and imports nothing heavy; ``register`` builds the typer command
around it. The console script usually reaches ``run_check`` through the typer-free fast path
(``llmctl/cli/fast.py``), so this module must not import typer at module level.
"""

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any


class CheckFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


def run_check(files: Sequence[Path | str], fmt: CheckFormat, strict: bool) -> int:
    """Check every file, print the problems in ``fmt``; the exit code (1 on any error)."""
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
    sys.stdout.flush()
    return 1 if failed else 0


def register(app: Any) -> None:
    # No `from __future__ import annotations` in this module: typer reads the annotations of
    # `check` below, which name typer and Annotated imported here, not at module level.
    from typing import Annotated

    import typer

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
                "--format",
                "-f",
                help="text, json, or github (CI annotations).",
                case_sensitive=False,
            ),
        ] = CheckFormat.text,
        strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    ) -> None:
        """Check blueprints against the schema and the semantic rules; exit 1 on any error."""
        raise typer.Exit(run_check(files, fmt, strict))

    app.command("check")(check)
