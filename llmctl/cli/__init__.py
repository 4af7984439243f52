"""The command line: a thin layer over the core.

``main`` is the console script. It first offers the arguments to the typer-free fast path
(``fast.py``: ``llmctl check`` runs in editors, pre-commit hooks and on every CI push, and
typer with its pydantic coercion costs more than the check itself), then to the typer application
in ``commands.py``, where every verb is registered. ``from llmctl.cli import app`` still works; it
loads typer only then.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    """Entry point: the fast path when it applies, else the full application."""
    from llmctl.cli.fast import run_fast

    rc = run_fast(sys.argv[1:])
    if rc is not None:
        sys.exit(rc)
    from llmctl.cli.commands import main as app_main

    app_main()


def __getattr__(name: str) -> Any:
    if name == "app":
        from llmctl.cli.commands import app

        return app
    raise AttributeError(f"module 'llmctl.cli' has no attribute {name!r}")
