"""The typed, immutable blueprint every verb works from.

Built only from a document that passed the schema, with the schema's defaults already applied, so
no field here needs a default of its own: the schema stays the one place defaults live.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from llmctl.blueprint.training import Training, build_training

Auto = Literal["auto"]


def _t(items: Any) -> tuple[Any, ...]:
    return tuple(items or ())


def _m(mapping: Any) -> MappingProxyType[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Metadata:
    name: str
    description: str
    owner: str | None
    labels: MappingProxyType[str, str]


@dataclass(frozen=True)
class Audit:
    required: bool
    retention_days: int | None
    sink: str | None
    include_question_text: bool
    rotate_bytes: int
    auditor_group: str | None  # may read records over the gateway (GET /v1/audit/records)


@dataclass(frozen=True)
class GrowthPhase:
    """One phase of the scaling plan (requirements.users.growth)."""

    name: str
    after: str | None
    requests_per_day: int | None
    concurrent: int | None
    peak_concurrent: int | None
    monthly_budget_usd: float | None


@dataclass(frozen=True)
class Users:
    """Load: people online (``concurrent``) and requests in flight (``peak_concurrent``) are
    different numbers; the sizing module derives the second from the request rate when omitted."""

    total: int
    peak_concurrent: int | None  # requests in flight, when the blueprint states it
    requests_per_day: int | None
    growth_factor: float
    concurrent: int | None = None
    peak_hour_share: float = 0.1
    growth: tuple[GrowthPhase, ...] = ()
    think_time_s: float | None = None  # with concurrent: people's pause between requests
    peak_requests_per_s: float | None = None  # arrival rate at the peak, when known directly


@dataclass(frozen=True)
class Slo:
    ttft_p95_ms: float
    latency_p95_ms: float
    error_rate: float
    availability: float


@dataclass(frozen=True)
class Requirements:
    data_residency: str
    region: str | None
    citations: str
    audit: Audit
    compliance: tuple[str, ...]
    users: Users
    slo: Slo
    # enforce: an answer the sources do not back is withheld and its quotes returned instead;
    # report: returned with its grounding figures. Default: enforce when citations are required.
    grounding: str = "enforce"


@dataclass(frozen=True)
class LocalModel:
    gguf: str | None
    context_tokens: int
    threads: int | None
    max_output_tokens: int


@dataclass(frozen=True)
class Model:
    id: str
    revision: str | None
    precision: str
    max_input_tokens: int
    max_output_tokens: int
    context_length: int | None
    endpoint: str | None
    local: LocalModel


@dataclass(frozen=True)
class Engine:
    backend: str
    tensor_parallel: int | Auto
    pipeline_parallel: int
    max_batch_size: int | Auto
    quantization: str
    kv_cache_free_gpu_mem_fraction: float
    triton_image: str


@dataclass(frozen=True)
class Replicas:
    min: int
    max: int


@dataclass(frozen=True)
class Capacity:
    gpu: str
    gpu_candidates: tuple[str, ...]
    replicas: Replicas
    monthly_budget_usd: float | None
    headroom: float
    gpu_prices: MappingProxyType[str, float]


@dataclass(frozen=True)
class Source:
    name: str
    path: str
    formats: tuple[str, ...]
    sensitivity: str
    acl: tuple[str, ...]
    acl_from: str

    @property
    def sensitive(self) -> bool:
        return self.sensitivity in ("confidential", "restricted")


@dataclass(frozen=True)
class Embedding:
    model: str
    dimensions: int
    batch_size: int


@dataclass(frozen=True)
class Chunking:
    tokens: int
    overlap: int


@dataclass(frozen=True)
class Retrieval:
    enabled: bool
    sources: tuple[Source, ...]
    embedding: Embedding
    chunking: Chunking
    top_k: int
    min_score: float
    latency_budget_ms: float


@dataclass(frozen=True)
class Ingress:
    sources: tuple[str, ...]
    host: str | None


@dataclass(frozen=True)
class Auth:
    mode: str
    issuer: str | None
    audience: str | None
    jwks_url: str | None
    groups_claim: str
    allow_anonymous: bool
    token_url: str | None  # OAuth2 token endpoint verify gets test identities' tokens from
    client_id_env: str | None  # names of the environment variables with the client's
    client_secret_env: str | None  # credentials: a blueprint never holds a secret


@dataclass(frozen=True)
class RateLimit:
    requests_per_minute: int
    burst: int


@dataclass(frozen=True)
class Network:
    ingress: Ingress
    egress: str
    egress_allow: tuple[str, ...]
    auth: Auth
    rate_limit: RateLimit
    max_request_bytes: int


@dataclass(frozen=True)
class Observability:
    metrics: bool
    log_level: str
    dashboards: bool


@dataclass(frozen=True)
class LoadGate:
    users: int
    spawn_rate: float
    duration_s: float
    p95_latency_ms: float
    p95_ttft_ms: float
    max_error_rate: float
    min_throughput_rps: float


@dataclass(frozen=True)
class QualityGate:
    eval_set: str | None
    baseline: str | None
    min_recall_at_k: float
    min_citation_accuracy: float
    min_refusal_correctness: float
    max_regression: float


@dataclass(frozen=True)
class Gates:
    load: LoadGate
    quality: QualityGate


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str | None
    value: str | None
    effect: str | None


@dataclass(frozen=True)
class Storage:
    class_name: str | None
    index_size: str
    model_store: str | None
    model_store_size: str


@dataclass(frozen=True)
class Target:
    name: str
    type: str
    namespace: str
    context: str | None
    kubernetes_version: str
    storage: Storage
    node_selector: MappingProxyType[str, str]
    tolerations: tuple[Toleration, ...]
    prometheus_operator: bool
    hpa_metric: str | None
    gateway_replicas: int
    gateway_image: str | None
    gate_overrides: MappingProxyType[str, Any]

    @property
    def is_local(self) -> bool:
        return self.type == "local"


@dataclass(frozen=True)
class Blueprint:
    """A validated blueprint. ``raw`` is the resolved document (defaults applied) it was built from."""

    path: Path
    metadata: Metadata
    requirements: Requirements
    model: Model
    engine: Engine
    capacity: Capacity
    retrieval: Retrieval
    network: Network
    observability: Observability
    training: Training | None  # the job spec for `llmctl train`; None: no training section
    targets: MappingProxyType[str, Target]
    raw: MappingProxyType[str, Any] = field(repr=False)
    _gates: MappingProxyType[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def hash(self) -> str:
        """Version of the blueprint: sha256 of the canonical resolved document."""
        return hashlib.sha256(canonical_json(self.raw).encode()).hexdigest()

    def section_hash(self, *sections: str) -> str:
        """Hash of some top-level sections only, so a gate change does not look like a model change."""
        part = {s: self.raw.get(s) for s in sections}
        return hashlib.sha256(canonical_json(part).encode()).hexdigest()

    @property
    def gates(self) -> Gates:
        return self.gates_for(None)

    def resolve_path(self, p: str | Path) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (self.base_dir / q).resolve()

    def target(self, name: str | None = None) -> Target:
        from llmctl.errors import LlmctlError

        name = name or "local"
        if name not in self.targets:
            known = ", ".join(sorted(self.targets))
            raise LlmctlError(f"{self.path}: no target '{name}' in the blueprint; targets: {known}")
        return self.targets[name]

    def gates_for(self, target: str | None) -> Gates:
        """The blueprint's gates with the target's overrides applied, missing thresholds from the SLOs."""
        merged: dict[str, dict[str, Any]] = {
            "load": dict(self._gates.get("load") or {}),
            "quality": dict(self._gates.get("quality") or {}),
        }
        if target is not None:
            for section, values in self.target(target).gate_overrides.items():
                merged.setdefault(section, {}).update(values or {})
        return _gates(merged, self.requirements)


def canonical_json(value: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, MappingProxyType):
            return dict(o)
        raise TypeError(type(o).__name__)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)


def _gates(d: dict[str, dict[str, Any]], req: Requirements) -> Gates:
    load, quality = d.get("load", {}), d.get("quality", {})
    # Simulated users default to the requests in flight the blueprint states, else to the
    # people online, else to 10 (what peakConcurrent defaulted to before it became optional).
    stated = req.users.peak_concurrent or req.users.concurrent or 10
    users = load.get("users", max(1, round(stated)))
    return Gates(
        load=LoadGate(
            users=users,
            spawn_rate=load.get("spawnRate", max(1.0, users / 10)),
            duration_s=load.get("durationS", 60.0),
            p95_latency_ms=load.get("p95LatencyMs", req.slo.latency_p95_ms),
            p95_ttft_ms=load.get("p95TtftMs", req.slo.ttft_p95_ms),
            max_error_rate=load.get("maxErrorRate", req.slo.error_rate),
            min_throughput_rps=load.get("minThroughputRps", 0.0),
        ),
        quality=QualityGate(
            eval_set=quality.get("evalSet"),
            baseline=quality.get("baseline"),
            min_recall_at_k=quality.get("minRecallAtK", 0.0),
            min_citation_accuracy=quality.get("minCitationAccuracy", 0.0),
            min_refusal_correctness=quality.get("minRefusalCorrectness", 1.0),
            max_regression=quality.get("maxRegression", 0.05),
        ),
    )


def build_blueprint(doc: dict[str, Any], path: Path) -> Blueprint:
    """Map a schema-valid document with defaults applied onto the typed model."""
    md, rq, mo, en = doc["metadata"], doc["requirements"], doc["model"], doc["engine"]
    ca, re_, ne, ob = doc["capacity"], doc["retrieval"], doc["network"], doc["observability"]
    au, us, slo, lo = rq["audit"], rq["users"], rq["slo"], mo["local"]
    requirements = Requirements(
        data_residency=rq["dataResidency"],
        region=rq.get("region"),
        citations=rq["citations"],
        grounding=rq.get("grounding") or ("enforce" if rq["citations"] == "required" else "report"),
        audit=Audit(
            required=au["required"],
            retention_days=au.get("retentionDays"),
            sink=au.get("sink"),
            include_question_text=au["includeQuestionText"],
            rotate_bytes=au["rotateBytes"],
            auditor_group=au.get("auditorGroup"),
        ),
        compliance=_t(rq["compliance"]),
        users=Users(
            total=us["total"],
            peak_concurrent=us.get("peakConcurrent"),
            requests_per_day=us.get("requestsPerDay"),
            growth_factor=float(us["growthFactor"]),
            concurrent=us.get("concurrent"),
            peak_hour_share=float(us["peakHourShare"]),
            think_time_s=us.get("thinkTimeS"),
            peak_requests_per_s=us.get("peakRequestsPerSecond"),
            growth=tuple(
                GrowthPhase(
                    name=g["name"],
                    after=g.get("after"),
                    requests_per_day=g.get("requestsPerDay"),
                    concurrent=g.get("concurrent"),
                    peak_concurrent=g.get("peakConcurrent"),
                    monthly_budget_usd=g.get("monthlyBudgetUsd"),
                )
                for g in us["growth"]
            ),
        ),
        slo=Slo(
            ttft_p95_ms=float(slo["ttftP95Ms"]),
            latency_p95_ms=float(slo["latencyP95Ms"]),
            error_rate=float(slo["errorRate"]),
            availability=float(slo["availability"]),
        ),
    )
    targets_doc = dict(doc.get("targets") or {})
    targets_doc.setdefault("local", {"type": "local", "kubernetesVersion": "1.30", "storage": {}})
    targets = {name: _target(name, t, md["name"]) for name, t in sorted(targets_doc.items())}
    auth = ne["auth"]
    return Blueprint(
        path=path,
        metadata=Metadata(
            name=md["name"],
            description=md.get("description", ""),
            owner=md.get("owner"),
            labels=_m(md.get("labels")),
        ),
        requirements=requirements,
        model=Model(
            id=mo["id"],
            revision=mo.get("revision"),
            precision=mo["precision"],
            max_input_tokens=mo["maxInputTokens"],
            max_output_tokens=mo["maxOutputTokens"],
            context_length=mo.get("contextLength"),
            endpoint=mo.get("endpoint"),
            local=LocalModel(
                gguf=lo.get("gguf"),
                context_tokens=lo["contextTokens"],
                threads=lo.get("threads"),
                max_output_tokens=lo["maxOutputTokens"],
            ),
        ),
        engine=Engine(
            backend=en["backend"],
            tensor_parallel=en["tensorParallel"],
            pipeline_parallel=en["pipelineParallel"],
            max_batch_size=en["maxBatchSize"],
            quantization=en["quantization"],
            kv_cache_free_gpu_mem_fraction=float(en["kvCacheFreeGpuMemFraction"]),
            triton_image=en["tritonImage"],
        ),
        capacity=Capacity(
            gpu=ca["gpu"],
            gpu_candidates=_t(ca.get("gpuCandidates")),
            replicas=Replicas(min=ca["replicas"]["min"], max=ca["replicas"]["max"]),
            monthly_budget_usd=ca.get("monthlyBudgetUsd"),
            headroom=float(ca["headroom"]),
            gpu_prices=_m(ca["gpuPrices"]),
        ),
        retrieval=Retrieval(
            enabled=re_["enabled"],
            sources=tuple(
                Source(
                    name=s["name"],
                    path=s["path"],
                    formats=_t(s["formats"]),
                    sensitivity=s["sensitivity"],
                    acl=_t(s.get("acl")),
                    acl_from=s["aclFrom"],
                )
                for s in re_["sources"]
            ),
            embedding=Embedding(
                model=re_["embedding"]["model"],
                dimensions=re_["embedding"]["dimensions"],
                batch_size=re_["embedding"]["batchSize"],
            ),
            chunking=Chunking(tokens=re_["chunking"]["tokens"], overlap=re_["chunking"]["overlap"]),
            top_k=re_["topK"],
            min_score=float(re_["minScore"]),
            latency_budget_ms=float(re_["latencyBudgetMs"]) if re_["enabled"] else 0.0,
        ),
        network=Network(
            ingress=Ingress(sources=_t(ne["ingress"]["sources"]), host=ne["ingress"].get("host")),
            egress=ne["egress"],
            egress_allow=_t(ne["egressAllow"]),
            auth=Auth(
                mode=auth["mode"],
                issuer=auth.get("issuer"),
                audience=auth.get("audience"),
                jwks_url=auth.get("jwksUrl"),
                groups_claim=auth["groupsClaim"],
                allow_anonymous=auth["allowAnonymous"],
                token_url=auth.get("tokenUrl"),
                client_id_env=auth.get("clientIdEnv"),
                client_secret_env=auth.get("clientSecretEnv"),
            ),
            rate_limit=RateLimit(
                requests_per_minute=ne["rateLimit"]["requestsPerMinute"],
                burst=ne["rateLimit"]["burst"],
            ),
            max_request_bytes=ne["maxRequestBytes"],
        ),
        observability=Observability(
            metrics=ob["metrics"], log_level=ob["logLevel"], dashboards=ob["dashboards"]
        ),
        training=build_training(doc.get("training")),
        targets=MappingProxyType(targets),
        raw=MappingProxyType(doc),
        _gates=MappingProxyType(doc.get("gates") or {}),
    )


def _target(name: str, t: dict[str, Any], service: str) -> Target:
    st = t.get("storage") or {}
    return Target(
        name=name,
        type=t["type"],
        namespace=t.get("namespace") or service,
        context=t.get("context"),
        kubernetes_version=t.get("kubernetesVersion", "1.30"),
        storage=Storage(
            class_name=st.get("className"),
            index_size=st.get("indexSize", "10Gi"),
            model_store=st.get("modelStore"),
            model_store_size=st.get("modelStoreSize", "200Gi"),
        ),
        node_selector=_m(t.get("nodeSelector")),
        tolerations=tuple(
            Toleration(
                key=x["key"],
                operator=x.get("operator"),
                value=x.get("value"),
                effect=x.get("effect"),
            )
            for x in t.get("tolerations") or ()
        ),
        prometheus_operator=bool(t.get("prometheusOperator", False)),
        hpa_metric=t.get("hpaMetric"),
        gateway_replicas=int(t.get("gatewayReplicas", 2)),
        gateway_image=t.get("gatewayImage"),
        gate_overrides=_m(t.get("gates")),
    )
