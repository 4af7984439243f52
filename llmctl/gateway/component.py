"""The gateway as a component of the local stack (what ``llmctl up`` hands the supervisor).

``gateway_component`` does the gateway's share of ``up``: the dev issuer's keys and the audit's
question key ring (once each), the config file, and the process spec. It starts nothing; with
``prepare=False`` (what ``plan`` passes) it writes nothing either and only describes the process,
so ``plan`` can compare it with what runs.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import StackError
from llmctl.gateway.audit_archive import capacity_problem
from llmctl.gateway.auth import DEV_JWKS_FILE, dev_issuer_name, ensure_dev_issuer
from llmctl.gateway.config import GatewayConfig, config_bytes, config_from_blueprint, write_config
from llmctl.gateway.questionkeys import ensure_question_keys, question_keys_path
from llmctl.state import StackState
from llmctl.triton_protocol import LLM_MODEL

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

COMPONENT_NAME = "gateway"


def gateway_argv(
    config: str | os.PathLike[str],
    *,
    port: int = 0,
    ready_file: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The gateway process's command line on 127.0.0.1 (port 0: the kernel picks one and the
    gateway writes it to ``ready_file``)."""
    argv = [python, "-m", "llmctl.gateway", "--config", str(config), "--host", "127.0.0.1"]
    argv += ["--port", str(port)]
    return argv + (["--ready-file", str(ready_file)] if ready_file is not None else [])


def _local_gguf(bp: Blueprint) -> str | None:
    """The GGUF the local stack serves (None when it cannot be resolved: the stack will say why
    when it starts the model; the gateway then sizes prompts with its byte bound)."""
    try:
        from llmctl.local.spec import local_spec_from_blueprint

        return str(local_spec_from_blueprint(bp).llm.gguf)
    except Exception:
        return None


def _chat_template(bp: Blueprint) -> str | None:
    """The local GGUF's own chat template (None: the gateway's ChatML default)."""
    try:
        from llmctl.local.prompt import gguf_chat_template
        from llmctl.local.spec import local_spec_from_blueprint

        return gguf_chat_template(str(local_spec_from_blueprint(bp).llm.gguf))
    except Exception:
        return None


def _stable_port(layout: StackState, free_port: Any, prepare: bool) -> int:
    """The port chosen the first time, so re-planning an unchanged stack changes nothing.

    Without ``prepare`` no port is chosen (0: the gateway is not running, so it starts anyway)."""
    from llmctl.local.supervisor import Supervisor

    rec = Supervisor(layout.dir).record(COMPONENT_NAME)
    if rec is not None and rec.ports.get("http"):
        return int(rec.ports["http"])
    remembered = layout.gateway_port_file
    try:
        return int(remembered.read_text().strip())
    except (OSError, ValueError):
        if not prepare:
            return 0
        port = int(free_port())
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(f"{port}\n")
        return port


def gateway_factory(
    bp: Blueprint,
    *,
    index_dir: str | os.PathLike[str] | None = None,
    engine_hash: str = "",
    index_hash: str = "",
    port: int = 0,
) -> Any:
    """A ``ComponentFactory`` for ``LocalTarget(extra_components=...)``.

    The target calls it with itself and Triton's endpoints once Triton is up (and at plan time
    with placeholders and ``prepare=False``); ``index_dir`` defaults to the stack's index. The
    engine version defaults to the LLM's local build key, so audit records name the exact model
    repository that answered; the index version is read by the gateway from the index.
    """

    def factory(target: Any, endpoints: Mapping[str, str], prepare: bool = True) -> Any:
        state = Path(target.state_dir)
        engine = engine_hash or target.repository.keys(target.spec).get(LLM_MODEL, "")
        return gateway_component(
            state,
            bp,
            triton_url=endpoints.get("triton_http", ""),
            triton_grpc_url=endpoints.get("triton_grpc", ""),
            index_dir=index_dir if index_dir is not None else target.state.index_dir,
            port=port,
            engine_hash=engine,
            index_hash=index_hash,
            target=target.name,
            prepare=prepare,
        )

    return factory


def gateway_component(
    state_dir: str | os.PathLike[str],
    bp: Blueprint,
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
    prepare: bool = True,
) -> Any:
    """Prepare and describe the gateway process for ``Supervisor.start``.

    ``triton_url`` is Triton's HTTP endpoint (``http://127.0.0.1:<http port>``, generation),
    ``triton_grpc_url`` its gRPC address (``127.0.0.1:<grpc port>``, embeddings); ``port`` 0 picks
    a free loopback port. Returns a ``llmctl.local.supervisor.ComponentSpec`` whose health URL is
    ``/healthz`` (the process is up; ``/readyz`` additionally needs Triton and the index).
    """
    from llmctl.local.supervisor import ComponentSpec, free_port

    state = Path(state_dir)
    layout = StackState.at(state)
    auth = bp.network.auth
    dev_jwks: str | None = None
    dev_issuer: str | None = None
    if auth.mode == "oidc" and prepare:
        dev = ensure_dev_issuer(
            state, audience=auth.audience or "llmctl", groups_claim=auth.groups_claim or "groups"
        )
        dev_jwks, dev_issuer = str(dev.jwks_path), dev.issuer
    elif auth.mode == "oidc":  # what ensure_dev_issuer will say, without creating a key
        dev_jwks = str(layout.auth_dir / DEV_JWKS_FILE)
        dev_issuer = dev_issuer_name(state)
    config: GatewayConfig = config_from_blueprint(
        bp,
        chat_template=_chat_template(bp),
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
    # Prompts are sized with the local GGUF's own tokenizer, the one the local server applies.
    config = config.with_changes(tokenizer=_local_gguf(bp))
    # The question key ring: made once (with prepare), named in the config either way, so `plan`
    # describes exactly the config `up` writes.
    keys = ensure_question_keys(state) if prepare else question_keys_path(state)
    config = replace(config, audit=replace(config.audit, question_key_path=str(keys)))
    from llmctl.rollout.revisions import revision_from_config

    revision = revision_from_config(config, bp.section_hash("retrieval"))
    config = config.with_changes(revision=revision.id, routing_path=str(layout.routing_file))
    path = layout.gateway_config
    if prepare:
        # Refused here, before the process starts, so `up` says why in one line.
        a = config.audit
        problem = capacity_problem(Path(a.path), a.retention_days, a.records_per_day)
        if problem:
            raise StackError(problem)
        write_config(config, path)
    port = port or _stable_port(layout, free_port, prepare)
    config_sha = hashlib.sha256(config_bytes(config)).hexdigest()
    return ComponentSpec(
        name=COMPONENT_NAME,
        argv=tuple(gateway_argv(path, port=port, python=python)),
        env=dict(os.environ if env is None else env),
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_file=layout.log_file(COMPONENT_NAME),
        ports={"http": port},
        labels={
            "blueprint_hash": config.blueprint_hash,
            "engine_hash": engine_hash,
            "index_hash": index_hash,
            "config_sha256": config_sha,
        },
    )
