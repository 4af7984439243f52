"""The running local stack as ``llmctl verify`` sees it: where it answers, how to act as its users.

Its folder comes from ``llmctl.state.StackState`` (the one owner of the state layout), so verify
finds the same gateway, issuer and audit trail that ``llmctl up`` started. Anything with these
attributes can stand in for it (``verify(..., stack=...)``), e.g. a gateway served by a test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import LlmctlError
from llmctl.gates.compliance.sockets import listening_sockets

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


class Stack:
    """Where the running stack of a local target answers, and how to act as one of its users."""

    def __init__(self, bp: Blueprint, target: str) -> None:
        from llmctl.gateway.component import COMPONENT_NAME
        from llmctl.local.supervisor import Supervisor
        from llmctl.state import StackState
        from llmctl.targets.local import TRITON

        self.state = StackState.of(bp.name, target)
        self.state_dir = self.state.dir
        self.supervisor = Supervisor(self.state_dir)
        gw = self.supervisor.record(COMPONENT_NAME)
        tr = self.supervisor.record(TRITON)
        if gw is None or not gw.ports.get("http"):
            flag = "" if target == "local" else f" --target {target}"
            raise LlmctlError(
                f"no gateway is running for {bp.name!r} ({self.state_dir}); start the stack with "
                f"`llmctl up {bp.path}{flag}` and `llmctl ingest {bp.path}{flag}` first"
            )
        self.gateway_url = f"http://127.0.0.1:{gw.ports['http']}"
        self.triton_url = (
            f"http://127.0.0.1:{tr.ports['http']}" if tr and tr.ports.get("http") else None
        )
        self.config: dict[str, Any] = {}
        cfg = self.state.gateway_config
        if cfg.is_file():
            self.config = json.loads(cfg.read_text(encoding="utf-8"))
        audit = (self.config.get("audit") or {}).get("path")
        self.audit_file = Path(audit) if audit else self.state.audit_file

    def token_for(self, user: str, groups: list[str], ttl_s: int = 7200) -> str:
        """A bearer token from the stack's dev issuer, so verify asks as a real employee would."""
        from llmctl.gateway.auth import mint_dev_token

        return mint_dev_token(self.state_dir, user=user, groups=groups, ttl_s=ttl_s)

    def endpoints(self) -> dict[str, str]:
        """What the stack's own clients call (the gateway's upstreams and identity provider)."""
        c = self.config
        out = {
            "triton_url": c.get("triton_url", ""),
            "triton_grpc_url": c.get("triton_grpc_url", ""),
        }
        auth = c.get("auth") or {}
        if auth.get("jwks_url"):
            out["auth.jwks_url"] = auth["jwks_url"]
        return {k: v for k, v in out.items() if v}

    def listeners(self) -> dict[str, list[str]]:
        """Each serving component's listening sockets (its whole process group's). A component
        that declares no port (the watchdog) serves nothing, so it is not expected to listen; if
        it did, the sockets of its group would still be caught under its own name."""
        out = {}
        for rec in self.supervisor.records():
            if not rec.ports and not listening_sockets([rec.pid]):
                continue
            pids = self.supervisor._group_members(rec) or [rec.pid]  # noqa: SLF001
            out[rec.name] = listening_sockets(pids)
        return out
