"""The target interface and the result types every target shares (see ``llmctl.targets``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: Progress events from the core: a short human-readable line; the CLI decides how to show it.
ProgressFn = Callable[[str], None]


#: The optional progress callback every target call takes.
Progress = ProgressFn | None


@dataclass(frozen=True)
class BuildOptions:
    """What ``llmctl build`` may ask for beyond the build itself (kubernetes targets only)."""

    dry_run: bool = False  # print the TensorRT-LLM spec and steps, run nothing
    emit_job: Path | None = None  # write a Kubernetes Job that builds on a GPU node


NO_OPTIONS = BuildOptions()


class Result:
    """What every target call returns: data for tools, lines for people."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def summary(self) -> list[str]:
        return []


@dataclass(frozen=True)
class DestroyResult(Result):
    stack: str
    target: str
    stopped: tuple[str, ...]

    def summary(self) -> list[str]:
        if not self.stopped:
            return [f"stack {self.stack!r} was not running; nothing to stop"]
        return [f"stopped {', '.join(self.stopped)}; stack {self.stack!r} is down"]


@runtime_checkable
class Target(Protocol):
    """build -> plan -> apply -> status -> destroy, each returning a ``Result``."""

    name: str
    kind: str

    def build(self, options: BuildOptions = NO_OPTIONS, on_progress: Progress = None) -> Result:
        """Build what the target serves (content-addressed: an unchanged build is not redone)."""

    def plan(self, on_progress: ProgressFn | None = None) -> Any:
        """What ``apply`` would change, writing nothing; has ``changed`` and ``summary()``."""

    def apply(self, plan: Any | None = None, on_progress: ProgressFn | None = None) -> Result:
        """Make the running stack match the plan; idempotent."""

    def status(self) -> Any:
        """What runs, how healthy it is, whether it matches the plan; has ``ok``."""

    def destroy(self, on_progress: ProgressFn | None = None) -> Result:
        """Stop everything this target started and clean up its runtime state."""
