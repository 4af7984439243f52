"""What a semantic rule sees and how it reports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llmctl.blueprint.model import Blueprint
from llmctl.blueprint.problems import Problem, Severity
from llmctl.blueprint.schema import json_path
from llmctl.blueprint.yamlpos import Located

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class RuleContext:
    """The typed blueprint plus the positions of the YAML it came from."""

    bp: Blueprint
    located: Located
    rule_id: str
    severity: Severity

    def problem(
        self, path: PathKey, message: str, *, severity: Severity | None = None, key: bool = False
    ) -> Problem:
        """A problem placed at ``path`` (or the nearest part of it that is written in the file)."""
        pos = self.located.pos(path, key=key)
        return Problem(
            self.located.file,
            pos.line,
            pos.col,
            self.rule_id,
            message,
            severity or self.severity,
            json_path(path),
        )

    def written(self, path: PathKey) -> bool:
        """Whether the user wrote this value (rather than it coming from a default)."""
        return tuple(path) in self.located.values


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    check: Callable[[RuleContext], Iterator[Problem]]
    summary: str
