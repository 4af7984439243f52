"""Network policy: nothing talks unless the blueprint says so.

Default deny for ingress and egress in the namespace; then the few paths the service needs:
callers → gateway (only from the blueprint's sources), gateway → Triton (HTTP/gRPC, generation and
embeddings), Prometheus → metrics ports, everyone → cluster DNS, Triton → the model store where
that is object storage, and the blueprint's explicit egress allow-list.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .spec import GATEWAY_PORT, TRITON_GRPC, TRITON_HTTP, TRITON_METRICS, StackSpec

PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
INGRESS_CONTROLLER_NS = "ingress-nginx"
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def policies(spec: StackSpec) -> dict[str, dict[str, Any]]:
    """name suffix → NetworkPolicy spec; a pure function so tests can read the rules directly."""
    gateway = base.selector(spec, "gateway")
    triton = base.selector(spec, "triton")
    # With a canary Deployment beside it (a rollout), Triton's rules cover both.
    names = ["triton", "triton-canary"] if spec.canary_engine_hash else ["triton"]
    tritons: dict[str, Any] = (
        {
            "matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": names}
            ],
            "matchLabels": {"app.kubernetes.io/instance": spec.name},
        }
        if spec.canary_engine_hash
        else {"matchLabels": triton}
    )
    out: dict[str, dict[str, Any]] = {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                            },
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
        "gateway-to-triton": {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"podSelector": tritons}],
                    "ports": _tcp(TRITON_HTTP, TRITON_GRPC),
                }
            ],
        },
        "triton-from-gateway": {
            "podSelector": tritons,
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": gateway}}],
                    "ports": _tcp(TRITON_HTTP, TRITON_GRPC),
                }
            ],
        },
    }
    sources: list[dict[str, Any]] = [{"ipBlock": {"cidr": c}} for c in spec.ingress_cidrs]
    if spec.ingress_host:
        sources.append(
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": INGRESS_CONTROLLER_NS}
                }
            }
        )
    if sources:
        out["gateway-ingress"] = {
            "podSelector": {"matchLabels": gateway},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": _tcp(GATEWAY_PORT)}],
        }
    if spec.metrics:
        scrape = [{"namespaceSelector": {}, "podSelector": {"matchLabels": PROMETHEUS}}]
        out["metrics-scrape"] = {
            "podSelector": {
                "matchExpressions": [
                    {
                        "key": "app.kubernetes.io/name",
                        "operator": "In",
                        "values": ["gateway", *names],
                    }
                ],
                "matchLabels": {"app.kubernetes.io/instance": spec.name},
            },
            "policyTypes": ["Ingress"],
            "ingress": [{"from": scrape, "ports": _tcp(GATEWAY_PORT, TRITON_METRICS)}],
        }
    if spec.model_store_kind == "s3":
        # Object storage has no fixed address: the allow-list names it under private residency;
        # elsewhere HTTPS to public addresses only (never the cluster's private ranges).
        if spec.egress_cidrs:
            to = [{"ipBlock": {"cidr": c}} for c in spec.egress_cidrs]
        elif not spec.private:
            to = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(PRIVATE_RANGES)}}]
        else:
            to = []
        if to:
            out["triton-model-store"] = {
                "podSelector": tritons,
                "policyTypes": ["Egress"],
                "egress": [{"to": to, "ports": _tcp(443)}],
            }
    if spec.egress == "allow" and not spec.private:
        out["allow-egress"] = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}
    elif spec.egress_cidrs:
        out["egress-allow-list"] = {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": c}} for c in spec.egress_cidrs]}],
        }
    return out


class NetworkPolicies(pulumi.ComponentResource):
    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:NetworkPolicies", base.name(spec, "network"), None, opts)
        names = []
        for suffix, policy in policies(spec).items():
            name = base.name(spec, suffix)
            k8s.networking.v1.NetworkPolicy(
                name,
                metadata=base.metadata(spec, name, "network-policy"),
                spec=policy,
                opts=base.child(self),
            )
            names.append(name)
        self.register_outputs({"policies": names})
