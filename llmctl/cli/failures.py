"""How a failed command looks: one line on stderr and an exit code, never a traceback.

Shared by the typer application (``commands.py``) and the typer-free fast path (``fast.py``), so both
speak the same way. ``LLMCTL_DEBUG=1`` makes the callers re-raise instead.
"""

from __future__ import annotations

import os
import sys

from llmctl.errors import LlmctlError

_RED = "\033[31m"
_RESET = "\033[0m"


def _emit(line: str) -> None:
    stream = sys.stderr
    colour = stream.isatty() and "NO_COLOR" not in os.environ
    stream.write(f"{_RED}{line}{_RESET}\n" if colour else f"{line}\n")
    stream.flush()


def report_error(exc: LlmctlError) -> int:
    """One line for llmctl's own errors (what is wrong and what to do); returns the exit code."""
    _emit(f"error: {exc}")
    return exc.exit_code


def report_internal_error(exc: BaseException) -> int:
    """One line for a bug, with the way to see the traceback."""
    _emit(f"internal error: {type(exc).__name__}: {exc} (set LLMCTL_DEBUG=1 for the traceback)")
    return 1
