"""A gateway ``llmctl verify`` reaches over the network: a deployed target, or any ``--url``.

``RemoteStack`` has the attributes the gates read from the local ``Stack`` (``gateway_url``,
``token_for``, ``audit_file``, ``endpoints()``, ``listeners()``), so smoke, load, quality and
compliance run unchanged. What a local run reads from files it gets over HTTP instead: the audit
records come from the gateway's ``GET /v1/audit/records`` as the blueprint's auditor group
(``fetch_audit``); there is no Triton URL (the gateway's ``/readyz`` covers its backends) and no
listener evidence (residency rests on the rendered plan's NetworkPolicies).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llmctl.errors import LlmctlError
from llmctl.gates.identity import TokenSource

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

IDS_PER_CALL = 100
AUDITOR_USER = "verify-auditor"
MAX_RATE_WAIT_S = 60.0


class RemoteStack:
    """A gateway at ``gateway_url`` whose callers' tokens come from ``tokens``."""

    triton_url: str | None = None
    audit_file = None

    def __init__(self, gateway_url: str, tokens: TokenSource) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.tokens = tokens

    def token_for(self, user: str, groups: list[str]) -> str:
        """A token for ``user`` with ``groups`` from the token source (kept in memory only)."""
        return self.tokens.token_for(user, groups)

    def endpoints(self) -> dict[str, str]:
        """No upstream is observable from outside; the plan's endpoints are judged instead."""
        return {}

    def listeners(self) -> dict[str, list[str]] | None:
        """Sockets cannot be read on another machine: None (no listener evidence)."""
        return None


def gateway_endpoint(bp: Blueprint, target: str, url: str | None = None) -> str:
    """Where the target's gateway answers: ``url``, else the blueprint's ingress host, else the
    Pulumi stack's recorded ``url`` output (where the pulumi CLI exists); one line otherwise."""
    if url:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LlmctlError(
                f"--url {url!r} is not an http(s) URL; pass e.g. https://gateway.example"
            )
        return url.rstrip("/")
    if bp.network.ingress.host:
        return f"https://{bp.network.ingress.host}"
    recorded = _recorded_url(bp, target)
    if recorded:
        return recorded
    spec = bp.target(target)
    raise LlmctlError(
        f"target {target!r} is {spec.type} and no gateway endpoint is known: pass --url URL of "
        "its gateway (or set network.ingress.host)"
    )


def _recorded_url(bp: Blueprint, target: str) -> str | None:
    """The ``url`` output of the target's Pulumi stack, None when it cannot be read here."""
    spec = bp.target(target)
    if spec.type != "kubernetes" or shutil.which("pulumi") is None:
        return None
    try:
        from llmctl.k8s import pulumi_cli
        from llmctl.k8s.stackref import StackRef

        url = pulumi_cli.outputs(StackRef(bp.name, target, spec.context)).get("url")
    except Exception:  # no backend login, no stack: the caller says to pass --url
        return None
    return str(url).rstrip("/") if url else None


def fetch_audit(
    stack: RemoteStack, request_ids: Sequence[str], auditor_group: str
) -> list[dict[str, Any]]:
    """The completion records of ``request_ids``, read as the auditor over the gateway.

    Raises ``LlmctlError`` (one line) when the endpoint refuses or cannot be reached; a 429 is
    waited out (``Retry-After``, at most ``MAX_RATE_WAIT_S`` in all)."""
    from llmctl.gateway.client import AUDIT_PATH, GatewayClient

    token = stack.token_for(AUDITOR_USER, [auditor_group])
    ids = list(dict.fromkeys(i for i in request_ids if i))
    records: list[dict[str, Any]] = []
    waited = 0.0
    with GatewayClient(stack.gateway_url, token, timeout=60.0) as client:
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            while True:
                r = client.audit_records(chunk)
                if r.status != 429 or waited >= MAX_RATE_WAIT_S:
                    break
                pause = min(float(r.headers.get("retry-after") or 2), MAX_RATE_WAIT_S - waited)
                time.sleep(max(pause, 0.5))
                waited += max(pause, 0.5)
            if r.status != 200:
                detail = r.body.get("error") or r.body
                raise LlmctlError(
                    f"{stack.gateway_url}{AUDIT_PATH} answered HTTP {r.status} to the auditor "
                    f"({AUDITOR_USER}, group {auditor_group}): {detail}"
                )
            records += list(r.body.get("records") or [])
    return records
