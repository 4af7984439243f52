"""The llmctl Kubernetes program: a function of a ``StackSpec``, nothing else.

``define(spec)`` creates every resource; ``program(spec)`` wraps it as the zero-argument function
the Automation API runs inline. The same function runs under ``pulumi.runtime.set_mocks`` for
``llmctl render`` and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .backup import Backup
from .gateway import Gateway, Retrieval
from .inference import Inference
from .monitoring import Monitoring
from .network import NetworkPolicies
from .spec import StackSpec


class Foundation(pulumi.ComponentResource):
    """The namespace, under the restricted pod-security standard."""

    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Foundation", base.name(spec, "foundation"), None, opts)
        pss = {
            f"pod-security.kubernetes.io/{mode}": "restricted"
            for mode in ("enforce", "audit", "warn")
        }
        self.namespace = k8s.core.v1.Namespace(
            spec.namespace,
            metadata=base.metadata(
                spec, spec.namespace, "namespace", extra_labels=pss, namespaced=False
            ),
            # Deleting a namespace deletes what llmctl does not own (PVC data, operator's Secrets).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.register_outputs({"namespace": self.namespace.metadata["name"]})


def define(spec: StackSpec) -> dict[str, Any]:
    """Create the whole stack; returns (and exports) the outputs `llmctl status` shows."""
    foundation = Foundation(spec)
    after = pulumi.ResourceOptions(depends_on=[foundation])
    network = NetworkPolicies(spec, after)
    inference = Inference(spec, pulumi.ResourceOptions(depends_on=[foundation, network]))
    deps: list[pulumi.Resource] = [foundation, inference]
    if spec.retrieval_enabled:
        deps.append(Retrieval(spec, after))
    gateway = Gateway(spec, pulumi.ResourceOptions(depends_on=deps))
    Monitoring(spec, after)
    Backup(spec, after)
    outputs: dict[str, Any] = {
        "namespace": spec.namespace,
        "url": gateway.url,
        "triton_deployment": base.name(spec, "triton"),
        "gateway_deployment": base.name(spec, "gateway"),
        "blueprint_hash": spec.blueprint_hash,
        "engine_hash": spec.engine_hash,
        "index_hash": spec.index_hash,
        "gpu": spec.gpu,
        "tp": spec.tp,
        "replicas_min": spec.replicas_min,
        "replicas_max": spec.replicas_max,
    }
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs


def program(spec: StackSpec) -> Callable[[], None]:
    def run() -> None:
        define(spec)

    return run
