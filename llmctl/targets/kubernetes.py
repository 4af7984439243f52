"""The ``kubernetes`` target: the blueprint's stack on a cluster, provisioned by Pulumi.

One resolved spec (blueprint + capacity plan + engine and index versions, ``llmctl.stacks.spec``) feeds
the program in ``stacks/``. ``render`` runs it under Pulumi's mock runtime and needs neither the
Pulumi CLI nor a cluster; ``plan``/``apply``/``status``/``destroy`` run it inline through the
Automation API (``llmctl.k8s.pulumi_cli``), which needs the CLI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import StackError
from llmctl.k8s.stackref import StackRef
from llmctl.stacks.spec import StackSpec, spec_from_blueprint
from llmctl.targets.base import NO_OPTIONS, BuildOptions, Progress, ProgressFn, Result

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


@dataclass
class KubernetesPlan(Result):
    """What ``apply`` would change; ``exit_code`` follows ``terraform plan -detailed-exitcode``."""

    stack: str
    changes: dict[str, int]
    spec: StackSpec

    @property
    def changed(self) -> bool:
        from llmctl.k8s.pulumi_cli import CHANGES

        return any(self.changes.get(op, 0) for op in CHANGES)

    @property
    def exit_code(self) -> int:
        return 2 if self.changed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "target": self.spec.target,
            "changed": self.changed,
            "changes": self.changes,
            "gpu": self.spec.gpu,
            "tp": self.spec.tp,
            "replicas": [self.spec.replicas_min, self.spec.replicas_max],
            "blueprint_hash": self.spec.blueprint_hash,
            "engine_hash": self.spec.engine_hash,
            "index_hash": self.spec.index_hash,
            "routing": self.spec.routing,
        }

    def summary(self) -> list[str]:
        from llmctl.rollout.kubernetes import traffic_lines

        changes = ", ".join(f"{k} {v}" for k, v in sorted(self.changes.items())) or "nothing"
        return [f"stack {self.stack!r}: {changes}", *traffic_lines(self.spec)]


@dataclass
class RenderOutput(Result):
    out_dir: Path
    files: list[Path]
    schema_version: str
    validated: list[str]
    errors: list[str]
    skipped: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "files": [str(f) for f in self.files],
            "schema_version": self.schema_version,
            "validated": self.validated,
            "errors": self.errors,
            "skipped": self.skipped,
            "notes": self.notes,
            "ok": self.ok,
        }

    def summary(self) -> list[str]:
        lines = [
            f"wrote {len(self.files)} manifests to {self.out_dir} (+ kustomization.yaml)",
            f"validated {len(self.validated)} against Kubernetes {self.schema_version} schemas",
        ]
        lines += [f"note: {line}" for line in self.skipped + self.notes]
        return lines + [f"invalid: {line}" for line in self.errors]


def resolve_spec(
    bp: Blueprint,
    target_name: str,
    *,
    capacity_plan: Any = None,
    build_job: dict[str, Any] | None = None,
    rollout: bool = True,
) -> StackSpec:
    """The spec for one kubernetes target of a blueprint, sizing it when no plan is given; with
    ``rollout``, the rollout in progress applied (``llmctl.rollout.kubernetes``)."""
    target = bp.target(target_name)
    if target.type != "kubernetes":
        raise StackError(f"target {target_name!r} is a {target.type} target, not kubernetes")
    if capacity_plan is None:
        from llmctl.sizing import plan
        from llmctl.sizing.blueprint import request_from_blueprint

        capacity_plan = plan(request_from_blueprint(bp))
    spec = spec_from_blueprint(bp, target_name, capacity_plan, build_job=build_job)
    from llmctl.rollout.kubernetes import read_intent

    intent = read_intent(bp, target_name) if rollout else None
    if intent is not None:
        from llmctl.stacks.spec import with_rollout

        spec = with_rollout(spec, intent)
    return spec


@dataclass(frozen=True)
class KubernetesApply(Result):
    stack: str
    changes: dict[str, int]
    outputs: dict[str, Any]

    def summary(self) -> list[str]:
        return [f"applied {self.changes}; gateway: {self.outputs.get('url')}"]


@dataclass(frozen=True)
class KubernetesStatus(Result):
    stack: str
    deployed: bool
    outputs: dict[str, Any]
    rollout: dict[str, Any]
    stale: list[str]
    ok: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        lines = [f"stack {self.stack!r} (kubernetes): {'deployed' if self.deployed else 'absent'}"]
        lines += [f"  {k:20} {v}" for k, v in self.outputs.items()]
        for name, r in self.rollout.items():
            ready = (
                f"{r.get('ready_replicas')}/{r.get('replicas')} ready"
                if r.get("known")
                else r.get("detail")
            )
            lines.append(f"  rollout {name}: {ready}")
        lines += [f"problem: {k} differs from the blueprint (run `llmctl up`)" for k in self.stale]
        return lines + [f"note: {n}" for n in self.notes]


@dataclass(frozen=True)
class KubernetesDestroy(Result):
    stack: str
    changes: dict[str, int]

    def summary(self) -> list[str]:
        return [f"stack {self.stack} destroyed: {self.changes}"]


class KubernetesTarget:
    """build → plan → apply → status → destroy for a kubernetes target (``llmctl.targets.Target``).

    The stack's identity (``<blueprint>-<target>`` and the kubeconfig context) comes straight from
    the blueprint, so ``status`` and ``destroy`` work even when the blueprint no longer sizes; the
    full spec (which runs the capacity planner) is resolved only by what needs it.
    """

    kind = "kubernetes"

    def __init__(
        self,
        bp: Blueprint | None,
        name: str,
        *,
        capacity_plan: Any = None,
        build_job: dict[str, Any] | None = None,
        spec: StackSpec | None = None,
    ) -> None:
        target = bp.target(name) if bp is not None else None
        if target is not None and target.type != "kubernetes":
            raise StackError(f"target {name!r} is a {target.type} target, not kubernetes")
        self.bp: Any = bp  # None only for a target made from a resolved spec (from_spec)
        self.name = name
        self._capacity_plan = capacity_plan
        self._build_job = build_job
        self._spec = spec
        if spec is not None:
            self.ref = StackRef(spec.name, spec.target, spec.context)
        elif bp is not None:
            self.ref = StackRef(bp.name, name, target.context if target else None)
        else:
            raise StackError("a kubernetes target needs a blueprint or a resolved spec")

    @classmethod
    def from_spec(cls, spec: StackSpec) -> KubernetesTarget:
        """A target for an already resolved spec (tests, and callers that sized already)."""
        return cls(None, spec.target, spec=spec)

    @property
    def spec(self) -> StackSpec:
        if self._spec is None:
            self._spec = resolve_spec(
                self.bp, self.name, capacity_plan=self._capacity_plan, build_job=self._build_job
            )
        return self._spec

    def build(self, options: BuildOptions = NO_OPTIONS, on_progress: Progress = None) -> Any:
        """The TensorRT-LLM engine and its model repository (``llmctl.engine.build``)."""
        from llmctl.engine.build import build_production

        return build_production(
            self.bp,
            self.name,
            dry_run=options.dry_run,
            emit_job=options.emit_job,
            progress=on_progress,
        )

    def render(self, out_dir: str | Path) -> RenderOutput:
        """Write the manifests (one file per object + kustomization.yaml) and validate them."""
        from llmctl.k8s.render import render, write
        from llmctl.k8s.validate import validate

        result = render(self.spec)
        files = write(result, Path(out_dir))
        report = validate(result.manifests, self.spec.kubernetes_version)
        return RenderOutput(
            out_dir=Path(out_dir),
            files=files,
            schema_version=report.version,
            validated=report.checked,
            errors=report.errors,
            skipped=report.skipped,
            notes=list(result.notes),
        )

    def plan(self, on_progress: ProgressFn | None = None) -> KubernetesPlan:
        from llmctl.k8s import pulumi_cli

        summary = pulumi_cli.preview(self.spec, on_progress)
        return KubernetesPlan(summary.stack, summary.changes, self.spec)

    def apply(
        self, plan: Any | None = None, on_progress: ProgressFn | None = None
    ) -> KubernetesApply:
        """Pulumi up. Confirmation is the caller's (the CLI asks unless -y) after showing ``plan()``."""
        from llmctl.k8s import pulumi_cli

        return KubernetesApply(**pulumi_cli.up(self.spec, on_progress))

    def status(self) -> KubernetesStatus:
        """The stack's outputs, plus each Deployment's rollout where kubectl and a kubeconfig are.

        Needs only the stack's identity; whether it is stale is said when the blueprint sizes."""
        from llmctl.errors import LlmctlError
        from llmctl.k8s import pulumi_cli

        outputs = pulumi_cli.outputs(self.ref)
        rollout = {}
        for key in ("triton_deployment", "gateway_deployment"):
            if key in outputs:
                rollout[outputs[key]] = self._rollout(str(outputs[key]))
        notes: list[str] = []
        stale: list[str] = []
        try:
            expected = {
                "engine_hash": self.spec.engine_hash,
                "blueprint_hash": self.spec.blueprint_hash,
            }
            stale = [k for k, v in expected.items() if outputs.get(k) not in (None, v)]
        except LlmctlError as exc:
            notes.append(f"cannot tell whether the stack is stale: {exc}")
        return KubernetesStatus(
            stack=pulumi_cli.stack_name(self.ref),
            deployed=bool(outputs),
            outputs=outputs,
            rollout=rollout,
            stale=stale,
            ok=bool(outputs) and not stale and all(r.get("ready", True) for r in rollout.values()),
            notes=notes,
        )

    def _rollout(self, deployment: str) -> dict[str, Any]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            return {"known": False, "detail": "kubectl not installed"}
        namespace = self.bp.target(self.name).namespace if self.bp else self.spec.namespace
        cmd = [kubectl, "get", "deployment", deployment, "-n", namespace, "-o", "json"]
        if self.ref.context:
            cmd[1:1] = ["--context", self.ref.context]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"known": False, "detail": str(exc)}
        if done.returncode != 0:
            return {
                "known": False,
                "detail": (done.stderr.strip().splitlines() or ["kubectl failed"])[-1],
            }
        st = json.loads(done.stdout).get("status", {})
        want = int(st.get("replicas", 0))
        ready = int(st.get("readyReplicas", 0))
        return {
            "known": True,
            "replicas": want,
            "ready_replicas": ready,
            "updated": int(st.get("updatedReplicas", 0)),
            "ready": want > 0 and ready == want,
        }

    def destroy(self, on_progress: ProgressFn | None = None) -> KubernetesDestroy:
        """Pulumi destroy of the stack by its identity alone (no sizing, no program run)."""
        from llmctl.k8s import pulumi_cli

        return KubernetesDestroy(**pulumi_cli.destroy(self.ref, on_progress))
