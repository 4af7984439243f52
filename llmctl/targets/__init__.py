"""Deployment targets: one interface, several places to run the same blueprint.

A target turns a resolved plan into running components and reports on them. ``local`` runs
processes on this machine (``llmctl.targets.local``); ``kubernetes`` runs Pulumi programs.
The CLI speaks only this protocol, so a new target needs no new verbs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

#: Progress events from the core: a short human-readable line; the CLI decides how to show it.
ProgressFn = Callable[[str], None]


@runtime_checkable
class Target(Protocol):
    """plan -> apply -> status -> destroy, each returning plain data the CLI can render or dump."""

    name: str

    def plan(self) -> Any:
        """What ``apply`` would change, without changing anything."""

    def apply(self, plan: Any | None = None, on_progress: ProgressFn | None = None) -> Any:
        """Make the running stack match the plan; idempotent."""

    def status(self) -> Any:
        """What runs, how healthy it is, and whether it matches the plan."""

    def destroy(self, on_progress: ProgressFn | None = None) -> Any:
        """Stop everything this target started and clean up its state."""
