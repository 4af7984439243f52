"""Validate rendered manifests against the Kubernetes OpenAPI schemas, offline.

kubernetes-validate ships the schemas for a range of Kubernetes versions; a blueprint names the
cluster's version ("1.30"), and we validate against the newest shipped version not newer than that
(or the oldest shipped one for an older cluster), strictly (unknown fields are errors: a typo in a
field name would otherwise be silently dropped by the API server). Kinds it has no schema for
(CRDs such as ServiceMonitor) are skipped with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmctl.errors import StackError


@dataclass
class ValidationReport:
    version: str  # the schema version used, e.g. "1.30.0"
    requested: str
    checked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def schema_version(requested: str) -> str:
    """The shipped schema version closest to ``requested`` (major.minor), preferring not newer."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError as exc:
        raise StackError("kubernetes-validate is not installed: pip install 'llmctl[k8s]'") from exc
    from packaging.version import Version

    versions = sorted(all_versions(), key=Version)
    want = Version(requested if requested.count(".") >= 2 else f"{requested}.0")
    older = [v for v in versions if Version(v) <= want]
    return older[-1] if older else versions[0]


def _where(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate(manifests: list[dict[str, Any]], kubernetes_version: str) -> ValidationReport:
    from kubernetes_validate import utils as kv

    version = schema_version(kubernetes_version)
    report = ValidationReport(version=version, requested=kubernetes_version)
    for obj in manifests:
        where = _where(obj)
        try:
            kv.validate(obj, version, strict=True)
            report.checked.append(where)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            report.errors.append(f"{where}: {path or '(root)'}: {exc.message}")
        except kv.SchemaNotFoundError:
            report.skipped.append(
                f"{where}: no schema for {obj.get('apiVersion')} (a CRD); not validated"
            )
    report.errors.extend(policy_problems(manifests))
    return report


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return [spec]
    template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template")
    return [template["spec"]] if template and "spec" in template else []


def policy_problems(manifests: list[dict[str, Any]]) -> list[str]:
    """What llmctl refuses to ship even when the schema allows it: a container without requests
    and limits, or one that may run as root or escalate."""
    problems = []
    for obj in manifests:
        for pod in _pod_specs(obj):
            pod_ctx = pod.get("securityContext") or {}
            if pod.get("automountServiceAccountToken") is not False:
                problems.append(f"{_where(obj)}: automountServiceAccountToken is not false")
            for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                where = f"{_where(obj)} container {c.get('name')}"
                res = c.get("resources") or {}
                for part in ("requests", "limits"):
                    if not {"cpu", "memory"} <= set(res.get(part) or {}):
                        problems.append(f"{where}: no cpu/memory {part}")
                ctx = {**pod_ctx, **(c.get("securityContext") or {})}
                if ctx.get("runAsNonRoot") is not True or not ctx.get("runAsUser"):
                    problems.append(f"{where}: may run as root (runAsNonRoot/runAsUser)")
                if ctx.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: allowPrivilegeEscalation is not false")
                if ctx.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{where}: root file system is writable")
                if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
                    problems.append(f"{where}: capabilities not dropped")
                if (ctx.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
                    problems.append(f"{where}: no RuntimeDefault seccomp profile")
    return problems
