"""residency: with ``dataResidency: private``, nothing the stack does can leave the machine.

Checked on what the run observed: the endpoints the stack's clients call, the sockets each local
component listens on, the blueprint's egress setting and the NetworkPolicies rendered for each
kubernetes target. A component that listens on every interface, an external model endpoint or an
egress rule to an ``ipBlock`` fails it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmctl.gates.compliance.base import RequirementContext
from llmctl.gates.compliance.evidence import Evidence
from llmctl.gates.compliance.sockets import host_of, is_loopback
from llmctl.gates.results import Check

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

REQUIREMENT = "residency"


def applies(ctx: RequirementContext) -> bool:
    return ctx.bp.requirements.data_residency == "private"


def check(ctx: RequirementContext) -> list[Check]:
    return check_residency(ctx.bp, ctx.target, ctx.evidence)


def check_residency(bp: Blueprint, target: Any, ev: Evidence) -> list[Check]:
    """No external endpoint, loopback-only listeners (local), egress denied (every target)."""
    req = "data residency: private"
    checks: list[Check] = []
    external = [("model.endpoint", bp.model.endpoint)] if bp.model.endpoint else []
    external += [(k, v) for k, v in ev.endpoints.items() if v and not is_loopback(host_of(v))]
    checks.append(
        Check(
            "residency.no-external-endpoint",
            not external,
            "no external endpoint in the plan"
            if not external
            else "external endpoints: " + ", ".join(f"{k}={v}" for k, v in external),
            value=[v for _, v in external],
            evidence=f"{req}: model.endpoint and the endpoints the stack's clients call "
            + (", ".join(sorted(ev.endpoints)) or "(none)"),
        )
    )
    if target.is_local:
        checks.append(_loopback_binds(ev.listeners, req))
    if bp.network.egress != "deny":
        checks.append(
            Check(
                "residency.egress-deny",
                False,
                f"network.egress is {bp.network.egress!r}, private residency needs 'deny'",
            )
        )
    for name, manifests in ev.manifests.items():
        if isinstance(manifests, str):
            checks.append(
                Check(f"residency.egress-denied[{name}]", None, f"target {name}: {manifests}")
            )
            continue
        ok, msg = egress_denied(manifests)
        checks.append(
            Check(
                f"residency.egress-denied[{name}]",
                ok,
                f"target {name}: {msg}",
                evidence=f"{req}: NetworkPolicies rendered for target {name}",
            )
        )
    return checks


def _loopback_binds(listeners: dict[str, list[str]] | None, req: str) -> Check:
    if listeners is None:
        return Check("residency.loopback-binds", None, "no listener evidence collected")
    bad = {c: [a for a in addrs if not is_loopback(host_of(a))] for c, addrs in listeners.items()}
    bad = {c: a for c, a in bad.items() if a}
    silent = [c for c, addrs in listeners.items() if not addrs]
    ok = not bad and not silent and bool(listeners)
    detail = "; ".join(f"{c}: {', '.join(a)}" for c, a in listeners.items())
    if bad:
        msg = "non-loopback listeners: " + "; ".join(f"{c} {', '.join(a)}" for c, a in bad.items())
    elif silent:
        msg = f"no listening socket found for {', '.join(silent)}"
    else:
        msg = f"every component listens on loopback only ({detail})"
    return Check(
        "residency.loopback-binds",
        ok,
        msg,
        value=listeners,
        evidence=f"{req}: /proc/net/tcp{{,6}} sockets of each component's processes",
    )


def egress_denied(manifests: Sequence[dict[str, Any]]) -> tuple[bool, str]:
    """A default-deny egress policy exists and no policy allows egress outside the namespace.

    Allowed: rules whose peers are pods/namespaces selectors (in-cluster) or DNS to kube-system;
    an ``ipBlock`` peer or an empty ``to`` (anywhere) counts as external egress.
    """
    policies = [m for m in manifests if m.get("kind") == "NetworkPolicy"]
    if not policies:
        return False, "no NetworkPolicy in the rendered manifests"
    default_deny = [
        p
        for p in policies
        if "Egress" in (p.get("spec", {}).get("policyTypes") or [])
        and not p.get("spec", {}).get("egress")
        and not (p.get("spec", {}).get("podSelector") or {}).get("matchLabels")
    ]
    if not default_deny:
        return False, "no default-deny egress NetworkPolicy"
    open_rules = []
    control_plane = [p for p in policies if _kubernetes_api_only(p)]
    for p in policies:
        if p in control_plane:
            continue
        for rule in p.get("spec", {}).get("egress") or []:
            peers = rule.get("to")
            if not peers or any("ipBlock" in peer for peer in peers):
                open_rules.append(p.get("metadata", {}).get("name", "?"))
    if open_rules:
        return False, "egress to outside the cluster allowed by " + ", ".join(
            sorted(set(open_rules))
        )
    api = (
        "; "
        + ", ".join(p.get("metadata", {}).get("name", "?") for p in control_plane)
        + " reaches only the Kubernetes API server (private ranges, 443/6443)"
        if control_plane
        else ""
    )
    return (
        True,
        f"default-deny egress ({default_deny[0].get('metadata', {}).get('name', '?')}), no external egress rule{api}",
    )


#: What a policy marked as Kubernetes API access may allow (stacks/backup.py renders the one).
_API_PORTS = {443, 6443}
_PRIVATE = tuple(
    ipaddress.IPv4Network(c) for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)


def _kubernetes_api_only(policy: dict[str, Any]) -> bool:
    """A policy that exists to reach the API server (the snapshot CronJob's): marked so, for
    labelled pods only, TCP 443/6443 only, and only to private address ranges. Such egress stays
    inside the organisation's network, so it does not break private residency."""
    meta = policy.get("metadata", {})
    if (meta.get("annotations") or {}).get("llmctl.dev/egress-purpose") != "kubernetes-api":
        return False
    spec = policy.get("spec", {})
    if not (spec.get("podSelector") or {}).get("matchLabels"):
        return False
    for rule in spec.get("egress") or []:
        ports = rule.get("ports") or []
        if not ports or any(
            p.get("protocol", "TCP") != "TCP" or p.get("port") not in _API_PORTS for p in ports
        ):
            return False
        peers = rule.get("to") or []
        if not peers:
            return False
        for peer in peers:
            cidr = (peer.get("ipBlock") or {}).get("cidr")
            try:
                net = ipaddress.ip_network(cidr) if cidr else None
            except ValueError:
                return False
            if not isinstance(net, ipaddress.IPv4Network) or not any(
                net.subnet_of(r) for r in _PRIVATE
            ):
                return False
    return True
