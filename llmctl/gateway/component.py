"""The gateway as a component of the local stack (what ``llmctl up`` hands the supervisor).

``gateway_component`` does the gateway's share of ``up``: the dev issuer's keys (once), the config
file, and the process spec. It starts nothing, so ``plan`` can call it too and compare labels.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmctl.gateway.auth import ensure_dev_issuer
from llmctl.gateway.config import GatewayConfig, config_from_blueprint, write_config

COMPONENT_NAME = "gateway"
CONFIG_FILE = "gateway/config.json"


def gateway_config_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / CONFIG_FILE


def _chat_template(bp: Any) -> str | None:
    """The local GGUF's own chat template (None: the gateway's ChatML default)."""
    try:
        from llmctl.local.prompt import gguf_chat_template
        from llmctl.local.spec import local_spec_from_blueprint

        return gguf_chat_template(str(local_spec_from_blueprint(bp).llm.gguf))
    except Exception:
        return None


def _stable_port(state: Path, free_port: Any) -> int:
    """The port chosen the first time, so re-planning an unchanged stack changes nothing."""
    from llmctl.local.supervisor import Supervisor

    rec = Supervisor(state).record(COMPONENT_NAME)
    if rec is not None and rec.ports.get("http"):
        return int(rec.ports["http"])
    remembered = state / "gateway" / "port"
    try:
        return int(remembered.read_text().strip())
    except (OSError, ValueError):
        port = int(free_port())
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(f"{port}\n")
        return port


def gateway_factory(
    bp: Any,
    *,
    index_dir: str | os.PathLike[str] | None = None,
    engine_hash: str = "",
    index_hash: str = "",
    port: int = 0,
) -> Any:
    """A ``ComponentFactory`` for ``LocalTarget(extra_components=...)``.

    The target calls it with itself and Triton's endpoints once Triton is up (and at plan time
    with placeholders); ``index_dir`` defaults to ``<state_dir>/index``.
    """

    def factory(target: Any, endpoints: Mapping[str, str]) -> Any:
        state = Path(target.state_dir)
        return gateway_component(
            state,
            bp,
            triton_url=endpoints.get("triton_http", ""),
            triton_grpc_url=endpoints.get("triton_grpc", ""),
            index_dir=index_dir if index_dir is not None else state / "index",
            port=port,
            engine_hash=engine_hash,
            index_hash=index_hash,
        )

    return factory


def gateway_component(
    state_dir: str | os.PathLike[str],
    bp: Any,
    *,
    triton_url: str,
    triton_grpc_url: str,
    index_dir: str | os.PathLike[str] | None,
    port: int = 0,
    engine_hash: str = "",
    index_hash: str = "",
    target: str = "local",
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> Any:
    """Prepare and describe the gateway process for ``Supervisor.start``.

    ``triton_url`` is Triton's HTTP endpoint (``http://127.0.0.1:<http port>``, generation),
    ``triton_grpc_url`` its gRPC address (``127.0.0.1:<grpc port>``, embeddings); ``port`` 0 picks
    a free loopback port. Returns a ``llmctl.local.supervisor.ComponentSpec`` whose health URL is
    ``/healthz`` (the process is up; ``/readyz`` additionally needs Triton and the index).
    """
    from llmctl.local.supervisor import ComponentSpec, free_port

    state = Path(state_dir)
    auth = bp.network.auth
    dev_jwks: str | None = None
    dev_issuer: str | None = None
    if auth.mode == "oidc":
        dev = ensure_dev_issuer(
            state, audience=auth.audience or "llmctl", groups_claim=auth.groups_claim or "groups"
        )
        dev_jwks, dev_issuer = str(dev.jwks_path), dev.issuer
    config: GatewayConfig = config_from_blueprint(
        bp,
        chat_template=_chat_template(bp) if target == "local" else None,
        state_dir=state,
        triton_url=triton_url,
        triton_grpc_url=triton_grpc_url,
        index_dir=str(index_dir) if index_dir is not None else None,
        engine_hash=engine_hash,
        index_hash=index_hash,
        target=target,
        dev_issuer=dev_issuer,
        dev_jwks_path=dev_jwks,
    )
    path = write_config(config, gateway_config_path(state))
    port = port or _stable_port(state, free_port)
    config_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return ComponentSpec(
        name=COMPONENT_NAME,
        argv=(
            python,
            "-m",
            "llmctl.gateway",
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ),
        env=dict(os.environ if env is None else env),
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_file=state / "logs" / "gateway.log",
        ports={"http": port},
        labels={
            "blueprint_hash": config.blueprint_hash,
            "engine_hash": engine_hash,
            "index_hash": index_hash,
            "config_sha256": config_sha,
        },
    )
