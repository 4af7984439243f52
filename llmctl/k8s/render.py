"""Run the Kubernetes program under Pulumi's mock runtime and write what it would create as YAML.

No Pulumi CLI and no cluster: ``pulumi.runtime.set_mocks`` replaces the engine, and the mock's
``new_resource`` sees each resource's type token and its inputs exactly as the provider would.
Those inputs are the Kubernetes objects, so writing them out gives manifests for GitOps and for
schema validation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmctl.stacks.spec import StackSpec

K8S_PREFIX = "kubernetes:"
#: Apply order for people and tools reading the folder (registration order is not deterministic).
KIND_ORDER = (
    "Namespace",
    "NetworkPolicy",
    "ServiceAccount",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Job",
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
)


@dataclass(frozen=True)
class Recorded:
    """One resource the program registered."""

    type: str  # the Pulumi type token, e.g. kubernetes:apps/v1:Deployment or llmctl:k8s:Gateway
    name: str  # the Pulumi resource name
    inputs: dict[str, Any]

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith(K8S_PREFIX) and not self.type.startswith("pulumi:providers")


@dataclass
class RenderResult:
    resources: list[Recorded]
    manifests: list[dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    notes: tuple[str, ...] = ()

    def components(self) -> list[Recorded]:
        return [r for r in self.resources if r.type.startswith("llmctl:k8s:")]


def _plain(value: Any) -> Any:
    """Integers back (the mock runtime hands numbers over as floats), keys sorted (its maps come
    in no fixed order, and equal specs must write byte-identical files)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def run_program(spec: StackSpec) -> list[Recorded]:
    """Every resource ``llmctl.stacks.program.define(spec)`` registers, in registration order."""
    import pulumi

    from llmctl.stacks.program import define

    class RecordingMocks(pulumi.runtime.Mocks):
        def __init__(self) -> None:
            self.resources: list[Recorded] = []

        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            self.resources.append(Recorded(args.typ, args.name, _plain(dict(args.inputs))))
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
            return {}, None

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(
        mocks, project="llmctl", stack=f"{spec.name}-{spec.target}", preview=False
    )

    @pulumi.runtime.test
    def run() -> None:
        define(spec)

    run()
    return mocks.resources


def manifest(resource: Recorded) -> dict[str, Any]:
    """A Kubernetes object from a resource's inputs, keys in the usual order."""
    inputs = dict(resource.inputs)
    out: dict[str, Any] = {"apiVersion": inputs.pop("apiVersion"), "kind": inputs.pop("kind")}
    out["metadata"] = inputs.pop("metadata", {})
    for key in sorted(inputs):
        out[key] = inputs[key]
    return out


def _order(obj: dict[str, Any]) -> tuple[int, str, str]:
    kind = obj["kind"]
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return rank, kind, obj["metadata"].get("name", "")


def render(spec: StackSpec) -> RenderResult:
    resources = run_program(spec)
    manifests = sorted((manifest(r) for r in resources if r.is_kubernetes), key=_order)
    return RenderResult(resources=resources, manifests=manifests, notes=spec.notes)


def file_name(obj: dict[str, Any]) -> str:
    kind = re.sub(r"(?<!^)(?=[A-Z])", "-", obj["kind"]).lower()
    return f"{kind}--{obj['metadata']['name']}.yaml"


def write(result: RenderResult, out_dir: Path) -> list[Path]:
    """One file per object (kind and name in the file name) and a kustomization.yaml listing them.

    Files llmctl wrote before and no longer renders are removed, so the folder can be committed as
    is for GitOps; nothing else in the folder is touched.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / ".llmctl-rendered"
    previous = set(marker.read_text().split()) if marker.exists() else set()
    names = []
    for obj in result.manifests:
        name = file_name(obj)
        (out_dir / name).write_text(
            yaml.safe_dump(obj, sort_keys=False, width=120), encoding="utf-8"
        )
        names.append(name)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": names,
    }
    (out_dir / "kustomization.yaml").write_text(
        yaml.safe_dump(kustomization, sort_keys=False), encoding="utf-8"
    )
    for stale in previous - set(names):
        (out_dir / stale).unlink(missing_ok=True)
    marker.write_text("\n".join(names) + "\n", encoding="utf-8")
    result.files = [out_dir / n for n in names]
    return result.files
