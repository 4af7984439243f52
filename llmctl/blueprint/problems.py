"""A problem found in a blueprint: where, which rule, how bad, what to do.

Modelled on yamllint's LintProblem: every finding carries a file, a line and a column, so an
editor or a CI annotation can point at it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Problem:
    """One finding. ``line`` and ``col`` are 1-based; ``json_path`` is like ``$.capacity.replicas``."""

    file: str
    line: int
    col: int
    rule_id: str
    message: str
    severity: Severity = "error"
    json_path: str = "$"

    def text(self) -> str:
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}:{self.col}: {self.rule_id}: {prefix}{self.message}"

    def github(self) -> str:
        # GitHub workflow command; newlines and '%' must be escaped there.
        msg = f"{self.rule_id}: {self.message}".replace("%", "%25").replace("\n", "%0A")
        return f"::{self.severity} file={self.file},line={self.line},col={self.col}::{msg}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def format_problems(problems: Iterable[Problem], fmt: str) -> str:
    """Render problems as text (one per line), json (an array) or github annotations."""
    items = sorted(problems)
    if fmt == "json":
        return json.dumps([p.to_dict() for p in items], indent=2)
    if fmt == "github":
        return "\n".join(p.github() for p in items)
    return "\n".join(p.text() for p in items)
