"""What every gate reports: plain data that the JSON, JUnit and HTML reports render.

Gates return figures and checks instead of raising, so one run reports every failure at once and
CI sees all of them, not just the first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass
class Check:
    """One comparison of a measured figure with its threshold (or one piece of evidence)."""

    name: str
    passed: bool | None  # None: could not be evaluated (reported as skipped)
    message: str
    value: Any = None
    threshold: Any = None
    evidence: str = ""  # for compliance: what was inspected

    @property
    def status(self) -> str:
        if self.passed is None:
            return SKIPPED
        return PASSED if self.passed else FAILED


@dataclass
class GateResult:
    """The outcome of one gate: its checks, its figures and how long it took."""

    name: str
    status: str  # passed | failed | skipped | error
    message: str = ""
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, SKIPPED)

    @classmethod
    def from_checks(
        cls, name: str, checks: list[Check], figures: dict[str, Any] | None = None
    ) -> GateResult:
        failed = [c for c in checks if c.passed is False]
        status = FAILED if failed else PASSED
        message = "; ".join(c.message for c in failed) if failed else f"{len(checks)} checks passed"
        return cls(name, status, message, checks, figures or {})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for c, cd in zip(self.checks, d["checks"], strict=True):
            cd["status"] = c.status
        return d


@dataclass
class VerifyResult:
    """Every gate of one ``llmctl verify`` run, in the order they ran."""

    blueprint: str
    blueprint_path: str
    target: str
    gates: list[GateResult] = field(default_factory=list)
    started_at: str = ""
    seconds: float = 0.0
    report_dir: str | None = None

    @property
    def ok(self) -> bool:
        return all(g.ok for g in self.gates)

    def gate(self, name: str) -> GateResult | None:
        return next((g for g in self.gates if g.name == name), None)

    @property
    def failed(self) -> list[str]:
        return [g.name for g in self.gates if not g.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "blueprint": self.blueprint,
            "blueprint_path": self.blueprint_path,
            "target": self.target,
            "ok": self.ok,
            "failed": self.failed,
            "started_at": self.started_at,
            "seconds": round(self.seconds, 3),
            "report_dir": self.report_dir,
            "gates": [g.to_dict() for g in self.gates],
        }


def le(name: str, value: float | None, limit: float, unit: str = "") -> Check:
    """``value <= limit``; a missing value fails (nothing measured is not a pass)."""
    if value is None:
        return Check(name, False, f"{name}: nothing measured (limit {limit:g}{unit})", None, limit)
    ok = value <= limit
    rel = "<=" if ok else ">"
    return Check(name, ok, f"{name} {value:.4g}{unit} {rel} {limit:g}{unit}", value, limit)


def ge(name: str, value: float | None, limit: float, unit: str = "") -> Check:
    """``value >= limit``; a missing value fails."""
    if value is None:
        return Check(
            name, False, f"{name}: nothing measured (minimum {limit:g}{unit})", None, limit
        )
    ok = value >= limit
    rel = ">=" if ok else "<"
    return Check(name, ok, f"{name} {value:.4g}{unit} {rel} {limit:g}{unit}", value, limit)
