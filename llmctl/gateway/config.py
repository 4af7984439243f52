"""The gateway's configuration: one JSON file, written by ``llmctl up`` into the stack's state dir.

Why a file of its own rather than the blueprint: the gateway is the same process on every target
(a local background process, a Kubernetes Deployment), and it must not need the blueprint, the
schema or the build cache at run time. ``llmctl up`` resolves everything (URLs, paths, hashes,
limits) once and writes it here; the gateway only reads. The file holds no secret: the signing key
stays in its own 0600 file and the gateway only ever sees the public JWKS.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import LlmctlError
from llmctl.state import StackState
from llmctl.triton_protocol import ENSEMBLE, LEGACY_LLM_MODEL, LLM_MODEL, LLMAPI

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

CONFIG_VERSION = 1


class GatewayConfigError(LlmctlError):
    """The gateway's config file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class AuthConfig:
    """How callers prove who they are; ``mode`` "oidc" checks bearer JWTs against a JWKS."""

    mode: str = "oidc"  # "oidc" | "none"
    issuer: str | None = None
    audience: str | None = None
    jwks_path: str | None = None  # local target: the development JWKS written by `llmctl up`
    jwks_url: str | None = None  # production: the identity provider's JWKS
    jwks_timeout_s: float = 5.0
    jwks_cache_s: float = 300.0
    groups_claim: str = "groups"  # dotted paths reach nested claims, e.g. "realm_access.roles"
    allow_anonymous: bool = False
    anonymous_groups: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_s: int = 30


@dataclass(frozen=True)
class RateLimitConfig:
    """Per-subject token bucket: ``burst`` requests at once, refilled at ``requests_per_minute``."""

    requests_per_minute: float = 60.0
    burst: int = 10
    # Requests that fail authentication, per client address: enough for a misconfigured client
    # to see its 401s, too few for a flood to push the retained audit window out.
    unauthenticated_per_minute: float = 120.0
    unauthenticated_burst: int = 30


@dataclass(frozen=True)
class AuditConfig:
    """Append-only JSONL audit trail, rotated by size into a sealed archive kept for
    ``retention_days`` (0: no retention required; the newest ``backups`` archived files stay).

    ``required``: the blueprint requires audit, so nothing is answered without a durable record
    (a failing sink turns asks into 503 and ``/readyz`` into 503). ``records_per_day`` is the
    blueprint's expected traffic; with ``retention_days`` it sizes the archive, and the gateway
    refuses to start on a volume that cannot hold it.
    """

    path: str = "audit.jsonl"
    required: bool = True
    retention_days: int = 0
    records_per_day: int = 0
    include_question_text: bool = False
    question_key_path: str | None = None  # the question key ring (None: an ephemeral key)
    # members may read records over HTTP (GET /v1/audit/records); None: the endpoint refuses all
    auditor_group: str | None = None
    max_bytes: int = 50 * 1024 * 1024
    backups: int = 10
    fsync: bool = True


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds that keep one request from hurting the service or overflowing the model's context.

    Prompts are sized in the served model's tokens (``GatewayConfig.tokenizer``); without a
    tokenizer, ASCII text is estimated at ``chars_per_token``, deliberately pessimistic (English
    BPE averages about 4), and other text at one token a UTF-8 byte. See
    ``llmctl/gateway/tokens.py``.
    """

    max_request_bytes: int = 16 * 1024
    max_question_chars: int = 2000
    default_top_k: int = 4
    max_top_k: int = 20
    min_score: float = 0.25
    context_tokens: int = 2048
    max_input_tokens: int = 1536
    max_output_tokens: int = 256
    max_source_chars: int = 700
    chars_per_token: float = 3.0
    triton_connect_timeout_s: float = 2.0
    triton_first_token_timeout_s: float = 30.0
    triton_token_timeout_s: float = 30.0
    retrieval_timeout_s: float = 5.0
    readiness_timeout_s: float = 2.0  # each /readyz check; a probe never waits longer
    # Slow clients (slowloris): left alone, uvicorn holds a silent connection, a half-sent header
    # block or an incomplete body open indefinitely, so a few hundred such sockets exhaust the
    # gateway. Enforced by llmctl/gateway/server.py (connection) and Gateway.read_json (body).
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    header_timeout_s: float = 10.0  # full request headers due this long after open / last response
    body_timeout_s: float = 10.0  # the whole request body due this long after reading starts (408)


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs; see ``load_config`` / ``write_config``."""

    blueprint_name: str = "blueprint"
    target: str = "local"
    triton_url: str = "http://127.0.0.1:8000"  # Triton HTTP (v2 protocol): generation, readiness
    triton_grpc_url: str = "127.0.0.1:8001"  # Triton gRPC: question embeddings (TritonEmbedder)
    # The LLM's Triton model and wire format (llmctl.triton_protocol): TensorRT-LLM's LLM-API
    # model on every target, the legacy "ensemble" only for engine.backend: tensorrt.
    llm_model: str = "tensorrt_llm"
    llm_protocol: str = "llmapi"
    # The revision this config answers as (llmctl.rollout.revisions) and the routing file that
    # may put other revisions beside it (llmctl.gateway.routing; None: this one answers all).
    revision: str = ""
    routing_path: str | None = None
    index_dir: str | None = None
    blueprint_hash: str = ""
    engine_hash: str = ""
    index_hash: str = ""
    prompt_format: str = "chat"  # "chat": the model's chat template | "plain": no template
    chat_template: str | None = None  # Jinja chat template of the served model; None: ChatML
    # The served model's tokenizer, which sizes prompts: a .gguf, a tokenizer.json or a folder
    # holding one; None: a byte-based upper bound (llmctl/gateway/tokens.py).
    tokenizer: str | None = None
    stop_words: tuple[str, ...] = ("<|im_end|>",)
    temperature: float = 0.0  # greedy: a policy question has one right answer, every time
    # Repetition control, passed where the LLM client takes them (llmctl.gateway.pipeline): a
    # small model otherwise loops ("DAG is a data validation tool ..." four times).
    frequency_penalty: float = 0.3
    presence_penalty: float = 0.0
    seed: int | None = 0
    # "enforce" | "report" (llmctl.gateway.grounding); the blueprint's requirements.grounding
    grounding: str = "enforce"
    log_level: str = "info"
    metrics: bool = True
    auth: AuthConfig = field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_changes(self, **changes: Any) -> GatewayConfig:
        """A copy with some fields replaced (tests and ``llmctl up`` tweak one thing at a time)."""
        return replace(self, **changes)


_SECTIONS = {
    "auth": AuthConfig,
    "rate_limit": RateLimitConfig,
    "audit": AuditConfig,
    "limits": LimitsConfig,
}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise GatewayConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS and cls is GatewayConfig:
            if not isinstance(value, dict):
                raise GatewayConfigError(f"{where}.{name}: expected an object")
            kwargs[name] = _build(_SECTIONS[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> GatewayConfig:
    """Build a config from its JSON form, refusing unknown keys (a typo must not pass silently)."""
    config = _build(GatewayConfig, data, "gateway config")
    if config.version != CONFIG_VERSION:
        raise GatewayConfigError(
            f"gateway config version {config.version} is not {CONFIG_VERSION}; re-run `llmctl up`"
        )
    if config.auth.mode not in ("oidc", "none"):
        raise GatewayConfigError(f"auth.mode must be 'oidc' or 'none', not {config.auth.mode!r}")
    if config.auth.mode == "oidc" and not (config.auth.jwks_path or config.auth.jwks_url):
        raise GatewayConfigError(
            "auth.mode is 'oidc' but neither auth.jwks_path nor jwks_url is set"
        )
    if config.grounding not in ("enforce", "report"):
        raise GatewayConfigError(
            f"grounding must be 'enforce' or 'report', not {config.grounding!r}"
        )
    if config.prompt_format not in ("chat", "plain"):
        raise GatewayConfigError(
            f"prompt_format must be 'chat' or 'plain', not {config.prompt_format!r}"
        )
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read the gateway config JSON; relative paths inside it are relative to the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GatewayConfigError(f"{p}: gateway config not found (run `llmctl up`)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise GatewayConfigError(f"{p}: cannot read gateway config: {exc}") from exc
    config = config_from_dict(data)
    return _resolve_paths(config, p.parent)


def _resolve_paths(config: GatewayConfig, base: Path) -> GatewayConfig:
    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        return str(Path(value) if Path(value).is_absolute() else (base / value).resolve())

    return replace(
        config,
        index_dir=resolve(config.index_dir),
        tokenizer=resolve(config.tokenizer),
        auth=replace(config.auth, jwks_path=resolve(config.auth.jwks_path)),
        audit=replace(
            config.audit,
            path=resolve(config.audit.path) or config.audit.path,
            question_key_path=resolve(config.audit.question_key_path),
        ),
    )


def write_config(config: GatewayConfig, path: str | os.PathLike[str]) -> Path:
    """Write the config atomically (temp file + rename) so a starting gateway never reads half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(config_bytes(config))
    os.replace(tmp, p)
    return p


def config_bytes(config: GatewayConfig) -> bytes:
    """The file ``write_config`` writes, so a plan can hash it without writing it."""
    return (json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def config_from_blueprint(
    bp: Blueprint,
    *,
    state_dir: str | os.PathLike[str],
    triton_url: str,
    triton_grpc_url: str,
    index_dir: str | None,
    engine_hash: str = "",
    index_hash: str = "",
    target: str = "local",
    dev_issuer: str | None = None,
    dev_jwks_path: str | None = None,
    chat_template: str | None = None,
) -> GatewayConfig:
    """Resolve a typed blueprint (see docs/BLUEPRINT_MODEL.md) into the gateway's config.

    On the local target the development issuer replaces the blueprint's: the stack made its own
    keys, and a laptop has no identity provider. Everything else comes from the blueprint.
    """
    state = Path(state_dir)
    net = bp.network
    auth_bp = net.auth
    model = bp.model
    kind = bp.targets[target].type if target in bp.targets else target
    if kind == "local":
        # The laptop model is not the production one: its own context and output budget apply.
        context_tokens = int(model.local.context_tokens)
        max_output = int(model.local.max_output_tokens or model.max_output_tokens)
    else:
        context_tokens = int(model.context_length or 0) or (
            int(model.max_input_tokens) + int(model.max_output_tokens)
        )
        max_output = int(model.max_output_tokens)
    max_output = min(max_output, max(32, context_tokens // 4))
    max_input = min(int(model.max_input_tokens), context_tokens - max_output)
    retrieval = bp.retrieval
    audit_bp = bp.requirements.audit
    # TensorRT engines (engine.backend: tensorrt) are served through the legacy ensemble; every
    # other case, the local stand-in included, is the LLM-API model.
    legacy = kind != "local" and bp.engine.backend == "tensorrt"
    return GatewayConfig(
        blueprint_name=bp.name,
        target=target,
        triton_url=triton_url,
        triton_grpc_url=triton_grpc_url,
        index_dir=index_dir,
        llm_model=LEGACY_LLM_MODEL if legacy else LLM_MODEL,
        llm_protocol=ENSEMBLE if legacy else LLMAPI,
        blueprint_hash=bp.hash,
        engine_hash=engine_hash,
        chat_template=chat_template,
        index_hash=index_hash,
        log_level=(bp.observability.log_level or "info").lower(),
        metrics=bp.observability.metrics,
        grounding=str(getattr(bp.requirements, "grounding", "enforce")),
        auth=AuthConfig(
            mode=auth_bp.mode,
            issuer=dev_issuer if dev_jwks_path else auth_bp.issuer,
            audience=auth_bp.audience or "llmctl",
            jwks_path=dev_jwks_path,
            jwks_url=None if dev_jwks_path else auth_bp.jwks_url,
            groups_claim=auth_bp.groups_claim or "groups",
            allow_anonymous=bool(auth_bp.allow_anonymous),
        ),
        rate_limit=RateLimitConfig(
            requests_per_minute=float(net.rate_limit.requests_per_minute),
            burst=int(net.rate_limit.burst),
        ),
        audit=AuditConfig(
            path=str(StackState.at(state).audit_file),
            include_question_text=bool(audit_bp.include_question_text),
            required=bool(audit_bp.required),
            retention_days=int(audit_bp.retention_days or 0),
            records_per_day=int(bp.requirements.users.requests_per_day or 0),
            max_bytes=int(getattr(audit_bp, "rotate_bytes", 0) or AuditConfig.max_bytes),
            auditor_group=getattr(audit_bp, "auditor_group", None),
        ),
        limits=LimitsConfig(
            max_request_bytes=int(net.max_request_bytes),
            default_top_k=int(retrieval.top_k),
            max_top_k=max(int(retrieval.top_k), 20),
            min_score=float(retrieval.min_score),
            context_tokens=context_tokens,
            max_input_tokens=max_input,
            max_output_tokens=max_output,
        ),
    )
