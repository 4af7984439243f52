"""The typer-free fast path for ``llmctl check FILE... [--format F] [--strict]``.

``llmctl check`` runs in editors, pre-commit hooks and on every CI push; importing typer (which
builds pydantic adapters for its parameters) costs more than checking a blueprint. So the console
script offers its arguments here first. Only the plain, unambiguous forms are handled; anything
else (``--help``, an unknown option, a missing file argument) returns ``None`` and goes to the
typer application, which owns the full grammar and its error messages. Both paths run the same
``run_check``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def parse_check(args: Sequence[str]) -> tuple[list[str], str, bool] | None:
    """``(files, format, strict)`` for a plain check command line, else ``None``."""
    files: list[str] = []
    fmt = "text"
    strict = False
    it = iter(args)
    for arg in it:
        if arg == "--strict":
            strict = True
        elif arg in ("--format", "-f"):
            value = next(it, None)
            if value is None:
                return None
            fmt = value.lower()
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1].lower()
        elif arg == "--":
            files.extend(it)
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            files.append(arg)
    if not files or fmt not in ("text", "json", "github"):
        return None
    return files, fmt, strict


def run_fast(argv: Sequence[str]) -> int | None:
    """Run ``argv`` here when the fast path covers it: the exit code, else ``None``."""
    if not argv or argv[0] != "check":
        return None
    parsed = parse_check(argv[1:])
    if parsed is None:
        return None
    from llmctl.cli.check import CheckFormat, run_check
    from llmctl.cli.failures import report_error, report_internal_error
    from llmctl.errors import LlmctlError

    files, fmt, strict = parsed
    try:
        return run_check(files, CheckFormat(fmt), strict)
    except LlmctlError as exc:
        if os.environ.get("LLMCTL_DEBUG") == "1":
            raise
        return report_error(exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("LLMCTL_DEBUG") == "1":
            raise
        return report_internal_error(exc)
