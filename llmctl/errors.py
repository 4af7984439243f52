"""llmctl's own exceptions.

Core code raises these; the CLI turns them into one line and an exit code (no traceback unless
LLMCTL_DEBUG=1). Anything else escaping to the CLI is a bug and is reported as one.
"""

from __future__ import annotations


class LlmctlError(Exception):
    """A failure the user can act on: the message says what is wrong and what to do."""

    exit_code = 1


class BlueprintError(LlmctlError):
    """The blueprint file cannot be read or is not a blueprint at all."""


class SizingError(LlmctlError):
    """The capacity planner cannot size the request (unknown model or GPU, nothing fits)."""


class BuildError(LlmctlError):
    """A model repository or engine cannot be built."""


class StackError(LlmctlError):
    """A target failed to start, report or stop its components."""


class BackendUnavailable(Exception):
    """Triton or the index cannot serve right now (the gateway answers 503). The message names
    the component only, never a prompt or an answer."""


class BackendTimeout(Exception):
    """Triton or the index did not answer within its timeout (the gateway answers 504)."""
