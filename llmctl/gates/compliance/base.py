"""What a requirement check sees (``RequirementContext``) and how it is registered (``Requirement``).

Every requirement module has the same shape, so the gate, the tests and a reader treat them alike:
``REQUIREMENT`` (the prefix of its checks' names, e.g. ``audit`` for ``audit.fields-complete``),
``applies(ctx)`` (does the blueprint ask for it) and ``check(ctx)`` (the checks, from evidence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance.evidence import Evidence
from llmctl.gates.results import Check

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


@dataclass(frozen=True)
class RequirementContext:
    """The blueprint, the target judged, the run's evidence and its responses (read once)."""

    bp: Blueprint
    target: Any
    evidence: Evidence
    responses: list[dict[str, Any]]


@dataclass(frozen=True)
class Requirement:
    id: str
    applies: Callable[[RequirementContext], bool]
    check: Callable[[RequirementContext], list[Check]]
    summary: str
