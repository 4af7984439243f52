"""What the local target's calls return: typed results with ``to_dict()`` and ``summary()``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llmctl.local.repository import ModelBuild
from llmctl.local.smoke import SmokeResult
from llmctl.local.supervisor import ComponentHealth
from llmctl.targets.base import Result


@dataclass(frozen=True)
class Action:
    verb: str  # build | start | restart | load | reload | unload
    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.verb} {self.subject}: {self.reason}"


@dataclass(frozen=True)
class LocalBuild(Result):
    """The model repository ``build`` made or found in the cache."""

    target: str
    builds: tuple[ModelBuild, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "models": [
                {"model": b.name, "key": b.key, "path": str(b.path), "built": b.built}
                for b in self.builds
            ],
        }

    def summary(self) -> list[str]:
        lines = [
            f"{b.name:10} {b.key}  {'built' if b.built else 'unchanged':9}  {b.path}"
            for b in self.builds
        ]
        if not any(b.built for b in self.builds):
            lines.append("nothing to do: every model is already built")
        return lines


@dataclass(frozen=True)
class LocalPlan(Result):
    stack: str
    models: dict[str, str]  # model -> build key it should serve
    actions: tuple[Action, ...]
    plan_hash: str
    target: str = "local"
    endpoints: dict[str, str] = field(default_factory=dict)  # what serves now

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["changed"] = self.changed
        return d

    def summary(self) -> list[str]:
        if not self.changed:
            return [f"stack {self.stack!r} is up to date (plan {self.plan_hash}); no changes"] + [
                f"  {name:15} {url}" for name, url in self.endpoints.items()
            ]
        return [f"plan for stack {self.stack!r} ({self.target}):"] + [
            f"  {a.verb:8} {a.subject}  {a.reason}" for a in self.actions
        ]


@dataclass(frozen=True)
class ApplyResult(Result):
    plan: LocalPlan
    changed: bool
    endpoints: dict[str, str]
    built: tuple[str, ...]
    loaded: tuple[str, ...]
    smoke: SmokeResult | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["plan"] = self.plan.to_dict()
        return d

    def summary(self) -> list[str]:
        if not self.changed:
            lines = self.plan.summary()
        else:
            lines = [f"stack {self.plan.stack!r} is up in {self.seconds:.1f} s"]
        if self.smoke is not None:
            lines.append(
                f"smoke test: {self.smoke.deltas} streamed deltas "
                f"({self.smoke.generation.strip()[:40]!r}), embeddings {self.smoke.embedding_shape}"
            )
        return lines + [f"  {name:15} {url}" for name, url in self.endpoints.items()]


@dataclass(frozen=True)
class ModelStatus:
    name: str
    version: str
    state: str  # READY | UNAVAILABLE | LOADING | UNLOADING | absent
    key: str | None  # build key Triton is serving
    expected_key: str | None  # build key the applied plan asked for
    reason: str = ""


@dataclass(frozen=True)
class StackStatus(Result):
    stack: str
    state: str  # running | degraded (a component dead, hung or missing, a model stale) | stopped
    components: tuple[ComponentHealth, ...]
    models: tuple[ModelStatus, ...]
    endpoints: dict[str, str]
    plan_hash: str | None
    state_dir: str
    target: str = "local"
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.state in ("running", "stopped")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = [asdict(c) for c in self.components]
        return d

    def summary(self) -> list[str]:
        lines = [f"stack {self.stack!r} ({self.target}): {self.state}  ({self.state_dir})"]
        if self.components:
            lines.append(
                f"  {'component':10} {'state':9} {'pid':>8} {'uptime':>8} {'restarts':>8}  "
                "ports  detail"
            )
            for c in self.components:
                uptime = f"{c.uptime_s:.0f} s" if c.uptime_s is not None else "-"
                ports = " ".join(f"{k}={v}" for k, v in c.ports.items())
                # why it was last restarted, while nothing more urgent is to be said
                detail = c.detail or (f"last restart: {c.last_exit}" if c.last_exit else "")
                lines.append(
                    f"  {c.name:10} {c.state:9} {c.pid or '-':>8} {uptime:>8} {c.restarts:>8}  "
                    f"{ports}  {detail}"
                )
        if self.models:
            lines.append(f"  {'model':10} {'version':8} {'state':11} build key -> expected")
            for m in self.models:
                lines.append(
                    f"  {m.name:10} {m.version:8} {m.state:11} {m.key or '-'} -> "
                    f"{m.expected_key or '-'}"
                )
        lines += [f"  {name:15} {url}" for name, url in self.endpoints.items()]
        return lines + [f"problem: {problem}" for problem in self.problems]
