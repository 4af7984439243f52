"""The ``kubernetes`` target: the blueprint's stack on a cluster, provisioned by Pulumi.

One resolved spec (blueprint + capacity plan + engine and index versions, ``stacks.spec``) feeds
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
from typing import Any

from llmctl.errors import StackError
from llmctl.targets import ProgressFn
from stacks.spec import StackSpec, spec_from_blueprint


@dataclass
class KubernetesPlan:
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
        }


@dataclass
class RenderOutput:
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


def resolve_spec(
    bp: Any, target_name: str, *, capacity_plan: Any = None, build_job: dict[str, Any] | None = None
) -> StackSpec:
    """The spec for one kubernetes target of a blueprint, sizing it when no plan is given."""
    target = bp.target(target_name)
    if target.type != "kubernetes":
        raise StackError(f"target {target_name!r} is a {target.type} target, not kubernetes")
    if capacity_plan is None:
        from llmctl.sizing import plan
        from llmctl.sizing.blueprint import request_from_blueprint

        capacity_plan = plan(request_from_blueprint(bp))
    return spec_from_blueprint(bp, target_name, capacity_plan, build_job=build_job)


class KubernetesTarget:
    """plan → apply → status → destroy for a kubernetes target (see ``llmctl.targets.Target``)."""

    def __init__(self, spec: StackSpec) -> None:
        self.spec = spec
        self.name = spec.target

    @classmethod
    def from_blueprint(cls, bp: Any, target_name: str, **kwargs: Any) -> KubernetesTarget:
        return cls(resolve_spec(bp, target_name, **kwargs))

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
    ) -> dict[str, Any]:
        """Pulumi up. Confirmation is the caller's (the CLI asks unless -y) after showing ``plan()``."""
        from llmctl.k8s import pulumi_cli

        return pulumi_cli.up(self.spec, on_progress)

    def status(self) -> dict[str, Any]:
        """The stack's outputs, plus each Deployment's rollout where kubectl and a kubeconfig are."""
        from llmctl.k8s import pulumi_cli

        outputs = pulumi_cli.outputs(self.spec)
        rollout = {}
        for key in ("triton_deployment", "gateway_deployment"):
            if key in outputs:
                rollout[outputs[key]] = self._rollout(str(outputs[key]))
        expected = {
            "engine_hash": self.spec.engine_hash,
            "blueprint_hash": self.spec.blueprint_hash,
        }
        stale = [k for k, v in expected.items() if outputs.get(k) not in (None, v)]
        return {
            "stack": pulumi_cli.stack_name(self.spec),
            "deployed": bool(outputs),
            "outputs": outputs,
            "rollout": rollout,
            "stale": stale,
            "ok": bool(outputs)
            and not stale
            and all(r.get("ready", True) for r in rollout.values()),
        }

    def _rollout(self, deployment: str) -> dict[str, Any]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            return {"known": False, "detail": "kubectl not installed"}
        cmd = [kubectl, "get", "deployment", deployment, "-n", self.spec.namespace, "-o", "json"]
        if self.spec.context:
            cmd[1:1] = ["--context", self.spec.context]
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

    def destroy(self, on_progress: ProgressFn | None = None) -> dict[str, Any]:
        from llmctl.k8s import pulumi_cli

        return pulumi_cli.destroy(self.spec, on_progress)
