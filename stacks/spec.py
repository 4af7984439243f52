"""The resolved plan the Kubernetes program is a function of.

``StackSpec`` holds plain values only (no blueprint, no planner objects), so the program in
``llmctl.stacks.program`` can be run inline by the Automation API, under Pulumi's mock runtime, or from a
test that builds a spec by hand. ``spec_from_blueprint`` is the one place that decides how the
blueprint, the capacity plan and the engine and index versions map onto the cluster.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmctl.triton_protocol import LEGACY_LLM_MODEL, LLM_MODEL

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

#: Where the gateway keeps its state inside its pod (config, index, audit trail).
STATE_DIR = "/var/lib/llmctl"
MODELS_DIR = "/models"
TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 8000, 8001, 8002
GATEWAY_PORT = 8080
#: Image of the init container that copies an engine from object storage (s3://).
FETCH_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.17.0"
DEFAULT_GATEWAY_IMAGE = "ghcr.io/llmctl/gateway:{version}"
#: Where gateways read the routing document (its own ConfigMap, re-read without a restart).
ROUTING_DIR = "/etc/llmctl/routing"
ROUTING_FILE = f"{ROUTING_DIR}/routing.json"
#: Where ``-trtllm-python-py3`` images keep TensorRT-LLM's LLM-API python model code
#: (``triton_backend/all_models/llmapi/tensorrt_llm/1/`` of the image's release, as NVIDIA's
#: tutorials copy it). llmctl ships only ``config.pbtxt`` and ``model.yaml``: the code must match the
#: tensorrt_llm the image serves with, so the container takes it from the image at start. The
#: container script reads ``$LLMCTL_LLMAPI_CODE_DIR`` first, for an image that keeps it elsewhere.
LLMAPI_CODE_DIR = "/app/all_models/llmapi/tensorrt_llm/1"
#: Serving backends (``engine.backend``): TensorRT-LLM's PyTorch backend behind the LLM-API model,
#: or the legacy TensorRT engines behind the inflight-batcher ensemble.
PYTORCH, TENSORRT = "pytorch", "tensorrt"


@dataclass(frozen=True)
class StackSpec:
    """Everything the Kubernetes program needs, resolved; two equal specs render equal manifests."""

    name: str
    target: str
    namespace: str
    kubernetes_version: str
    context: str | None
    blueprint_hash: str
    engine_hash: str
    index_hash: str
    # inference (Triton)
    triton_image: str
    gpu: str
    precision: str
    tp: int
    replicas_min: int
    replicas_max: int
    max_batch_size: int
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, str], ...]
    model_store: str  # pvc://NAME or s3://bucket/prefix
    model_store_size: str
    storage_class: str | None
    hpa_metric: str | None
    hpa_target_value: str
    availability: float
    # retrieval
    retrieval_enabled: bool
    index_size: str
    # gateway
    gateway_image: str
    gateway_replicas: int
    gateway_config: dict[str, Any]
    audit_sink: str | None
    ingress_host: str | None
    ingress_cidrs: tuple[str, ...]
    # network
    private: bool
    egress: str  # "deny" | "allow"
    egress_cidrs: tuple[str, ...]
    # monitoring
    metrics: bool
    prometheus_operator: bool
    dashboards: bool
    build_job: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default=())
    #: Prometheus rule groups (``llmctl.ops.alerts.rule_groups``), rendered as a PrometheusRule
    #: next to the ServiceMonitors.
    alert_groups: tuple[dict[str, Any], ...] = field(default=())
    #: ``pytorch`` (LLM-API model ``tensorrt_llm``) or ``tensorrt`` (engines, ``ensemble``).
    backend: str = PYTORCH
    #: The Triton model that serves the LLM; Triton's readiness of it gates the pod.
    llm_model: str = LLM_MODEL
    #: Pipeline stages per replica (``engine.pipelineParallel``): a pytorch replica needs tp x pp GPUs.
    pp: int = 1
    #: The Hugging Face id of a pytorch checkpoint served as is from the store's HF cache (the
    #: model's ``hf-cache/hub/models--ORG--NAME`` folder); None for a local model.
    hf_model_id: str | None = None
    #: A rollout in progress (``llmctl rollout --target``): the gateways' routing document
    #: (``llmctl.gateway.routing``), and the canary's engine/artifact when its model differs (a
    #: second Triton Deployment, ``<name>-triton-canary``, serves it).
    routing: dict[str, Any] | None = None
    canary_engine_hash: str | None = None
    canary_replicas: int = 1

    @property
    def model_store_kind(self) -> str:
        return "s3" if self.model_store.startswith("s3://") else "pvc"

    @property
    def model_store_pvc(self) -> str:
        return self.model_store.removeprefix("pvc://")

    @property
    def gpus_per_replica(self) -> int:
        """GPUs one pytorch replica needs (every TP rank of every pipeline stage); the legacy
        engine Deployment keeps requesting ``tp`` as it always has."""
        return self.tp * self.pp if self.backend == PYTORCH else self.tp

    @property
    def artifact_dir(self) -> str:
        """The pytorch backend's artifact in the store (``checkpoint/`` and ``tokenizer/``), which
        the rendered ``model.yaml`` names by absolute path under ``/models``."""
        return f"engines/{self.engine_hash}"

    @property
    def hf_cache_model_dir(self) -> str | None:
        """``hf-cache/hub/models--ORG--NAME`` inside the store, huggingface_hub's cache layout."""
        if not self.hf_model_id:
            return None
        return "hf-cache/hub/models--" + self.hf_model_id.replace("/", "--")

    @property
    def repository_dir(self) -> str:
        """Triton's model repository for this engine inside the store (``<store>/repositories/<key>``).

        The store uses the engine cache's layout (``llmctl.engine``): the engine a build Job wrote is
        at ``engines/<key>/`` and the embedder at ``embedder/``; the rendered repository points at
        them by absolute path under ``/models``. Content-addressed, so a new engine never replaces
        the serving one in place.
        """
        return f"repositories/{self.engine_hash}"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def dashboard_uid(service: str) -> str:
    """The Grafana dashboard's uid (Grafana allows 40 characters), for links from the runbook."""
    return f"llmctl-{service}"[:40]


def dashboard_title(service: str, target: str) -> str:
    return f"llmctl: {service} ({target})"


def _canonical(value: Any) -> str:
    def default(o: Any) -> Any:
        if hasattr(o, "items"):
            return dict(o)
        raise TypeError(type(o).__name__)

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=default)


def deploy_hash(bp: Blueprint) -> str:
    """The blueprint version that deploys: its resolved document without the gates.

    Gates (and a target's gate overrides) only matter to ``llmctl verify``; leaving them out means
    tightening a gate does not roll every pod in the cluster.
    """
    doc = {k: v for k, v in dict(bp.raw).items() if k != "gates"}
    targets = {
        name: {k: v for k, v in dict(t).items() if k != "gates"}
        for name, t in dict(doc.get("targets") or {}).items()
    }
    doc["targets"] = targets
    return hashlib.sha256(_canonical(doc).encode()).hexdigest()


def engine_version(bp: Blueprint, plan: Any, target_name: str | None = None) -> str:
    """The engine's content address.

    ``llmctl.engine.engine_version`` (the engine cache's key) where the engine package provides it;
    otherwise a stand-in from what decides an engine: the model and engine sections and the plan's
    GPU, precision and tensor parallelism.
    """
    try:
        from llmctl.engine import engine_version as cache_key
    except ImportError:
        cache_key = None
    if cache_key is not None:
        return str(cache_key(bp, target_name, plan))
    part = {
        "sections": bp.section_hash("model", "engine"),
        "gpu": plan.gpu,
        "precision": plan.precision,
        "tp": int(plan.tp),
    }
    return hashlib.sha256(_canonical(part).encode()).hexdigest()


def index_version(bp: Blueprint) -> str:
    """The index's specification version (sources, embedding model, chunking).

    The content hash of an ingested index is only known where the documents are; the gateway
    stamps that one on every answer. This version changes whenever re-ingesting is needed.
    """
    return bp.section_hash("retrieval")


def replica_bounds(plan: Any) -> tuple[int, int]:
    """HPA bounds from the capacity plan: the sized replicas as the floor, the ceiling the plan
    was searched under (never below what growth needs)."""
    low = int(plan.replicas)
    request = getattr(plan, "request", None)
    ceiling = int(getattr(request, "replicas_max", 0) or 0)
    growth = int(getattr(plan, "replicas_at_growth", 0) or 0)
    return low, max(low, ceiling, growth)


def _cidrs(sources: tuple[str, ...], private: bool) -> tuple[tuple[str, ...], list[str]]:
    out, notes = [], []
    for s in sources:
        if s == "internet":
            if private:
                notes.append("ingress source 'internet' ignored: data residency is private")
                continue
            out.append("0.0.0.0/0")
        else:
            out.append(str(ipaddress.ip_network(s, strict=False)))
    return tuple(out), notes


def _egress_cidrs(allow: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    out, notes = [], []
    for entry in allow:
        host = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        try:
            out.append(str(ipaddress.ip_network(host, strict=False)))
        except ValueError:
            notes.append(
                f"egressAllow {entry!r} is a host name: a NetworkPolicy can only allow IP ranges; "
                "use an egress proxy or a CNI with FQDN policies"
            )
    return tuple(out), notes


def spec_from_blueprint(
    bp: Blueprint,
    target_name: str,
    plan: Any,
    *,
    engine_hash: str | None = None,
    index_hash: str | None = None,
    build_job: dict[str, Any] | None = None,
) -> StackSpec:
    """Resolve blueprint + capacity plan + versions into the spec the program renders."""
    from llmctl import __version__
    from llmctl.gateway.config import config_from_blueprint
    from llmctl.ops.alerts import rule_groups, runbook_path, series_selector

    target = bp.target(target_name)
    private = bp.requirements.data_residency == "private"
    engine = engine_hash or engine_version(bp, plan, target_name)
    index = index_hash or index_version(bp)
    bp_hash = deploy_hash(bp)
    low, high = replica_bounds(plan)
    ingress, notes = _cidrs(tuple(bp.network.ingress.sources), private)
    egress, more = _egress_cidrs(tuple(bp.network.egress_allow))
    notes += more
    jwks = bp.network.auth.jwks_url if bp.network.auth.mode == "oidc" else None
    if jwks and not egress and (private or bp.network.egress == "deny"):
        notes.append(
            f"the gateway fetches signing keys from {jwks}, but egress is denied: add the identity "
            "provider's address range to network.egressAllow, or authentication will fail"
        )
    store = target.storage.model_store or f"pvc://{bp.name}-models"
    if not (store.startswith("pvc://") or store.startswith("s3://")):
        from llmctl.errors import StackError

        raise StackError(
            f"target {target_name!r}: storage.modelStore must be pvc://NAME or s3://bucket/prefix, not {store!r}"
        )
    triton = f"{bp.name}-triton.{target.namespace}.svc.cluster.local"
    gw = config_from_blueprint(
        bp,
        state_dir=STATE_DIR,
        triton_url=f"http://{triton}:{TRITON_HTTP}",
        triton_grpc_url=f"{triton}:{TRITON_GRPC}",
        index_dir=f"{STATE_DIR}/index" if bp.retrieval.enabled else None,
        engine_hash=engine,
        index_hash="",  # the opened index's own content hash is stamped at run time
        target=target_name,
    ).with_changes(blueprint_hash=bp_hash)
    # One audit file per replica: the pod name is appended by the Deployment (subPathExpr).
    config = gw.to_dict()
    backend = serving_backend(str(bp.engine.backend))
    sink = (
        bp.requirements.audit.sink
        if bp.requirements.audit.required or bp.requirements.audit.sink
        else None
    )
    return StackSpec(
        name=bp.name,
        target=target_name,
        namespace=target.namespace,
        kubernetes_version=target.kubernetes_version,
        context=target.context,
        blueprint_hash=bp_hash,
        engine_hash=engine,
        index_hash=index,
        triton_image=bp.engine.triton_image,
        gpu=str(plan.gpu),
        precision=str(plan.precision),
        tp=int(plan.tp),
        replicas_min=low,
        replicas_max=high,
        max_batch_size=int(plan.max_batch_size),
        node_selector=dict(target.node_selector),
        tolerations=tuple(
            {
                k: v
                for k, v in (
                    ("key", t.key),
                    ("operator", t.operator),
                    ("value", t.value),
                    ("effect", t.effect),
                )
                if v
            }
            for t in target.tolerations
        ),
        model_store=store,
        model_store_size=target.storage.model_store_size,
        storage_class=target.storage.class_name,
        hpa_metric=target.hpa_metric,
        hpa_target_value=_hpa_target(target.hpa_metric, bp),
        availability=float(bp.requirements.slo.availability),
        retrieval_enabled=bool(bp.retrieval.enabled),
        index_size=target.storage.index_size,
        gateway_image=target.gateway_image or DEFAULT_GATEWAY_IMAGE.format(version=__version__),
        gateway_replicas=int(target.gateway_replicas),
        gateway_config=config,
        audit_sink=sink,
        ingress_host=bp.network.ingress.host,
        ingress_cidrs=ingress,
        private=private,
        egress="deny" if private else bp.network.egress,
        egress_cidrs=egress,
        metrics=bool(bp.observability.metrics),
        prometheus_operator=bool(target.prometheus_operator),
        dashboards=bool(bp.observability.dashboards),
        build_job=build_job,
        backend=backend,
        llm_model=LLM_MODEL if backend == PYTORCH else LEGACY_LLM_MODEL,
        pp=int(bp.engine.pipeline_parallel or 1),
        hf_model_id=_hf_id(str(bp.model.id)) if backend == PYTORCH else None,
        notes=tuple(notes),
        alert_groups=tuple(
            rule_groups(
                bp,
                series_selector(bp, target_name),
                runbook_url=runbook_path(bp, target_name),
            )
        ),
    )


def _hf_id(model_id: str) -> str | None:
    """``ORG/NAME`` when ``model.id`` names a Hugging Face repository rather than a folder."""
    if model_id.startswith(("/", "./", "../", "~", "file://")) or model_id.count("/") != 1:
        return None
    return model_id


def serving_backend(name: str) -> str:
    """``pytorch`` or ``tensorrt`` from ``engine.backend``.

    Blueprints from before the pytorch backend say ``tensorrt-llm``, which meant TensorRT engines:
    they keep getting the engine Deployment rather than silently switching serving stacks.
    """
    value = name.strip().lower()
    if value == PYTORCH:
        return PYTORCH
    if value in (TENSORRT, "tensorrt-llm", "tensorrt_llm", "trtllm"):
        return TENSORRT
    from llmctl.errors import StackError

    raise StackError(f"engine.backend must be {PYTORCH} or {TENSORRT}, not {name!r}")


def _hpa_target(metric: str | None, bp: Blueprint) -> str:
    """Average value per pod that triggers a scale-out.

    For Triton's queue time (microseconds, a counter the adapter turns into a rate) a tenth of the
    TTFT budget; for any other metric 1 (the adapter is expected to normalise it).
    """
    if not metric:
        return "0"
    if "queue_duration_us" in metric:
        return str(max(1, math.floor(bp.requirements.slo.ttft_p95_ms * 1000 / 10)))
    return "1"


def with_rollout(spec: StackSpec, intent: dict[str, Any]) -> StackSpec:
    """``spec`` (the new blueprint's) with a rollout in progress: the stable revision keeps its
    engine in the main Triton Deployment, the canary's runs beside it when it differs, and the
    gateways split subjects between the two by ``intent["weight"]`` percent (sticky)."""
    from dataclasses import replace

    stable, canary = intent["stable"], intent["canary"]
    weight = float(intent["weight"])
    other_model = canary["model_hash"] != stable["model_hash"]
    canary_url = (
        f"http://{spec.name}-triton-canary.{spec.namespace}.svc.cluster.local:{TRITON_HTTP}"
        if other_model
        else None
    )
    routing = {
        "format": 1,
        "mode": "canary",
        "salt": canary["id"],
        "arms": [
            {
                "revision": canary["id"],
                "role": "canary",
                "weight": weight,
                "llm_url": canary_url,
                "settings": dict(canary.get("settings") or {}),
            },
            {
                "revision": stable["id"],
                "role": "stable",
                "weight": 100 - weight,
                "settings": dict(stable.get("settings") or {}),
            },
        ],
    }
    config = {
        **spec.gateway_config,
        "revision": stable["id"],
        "engine_hash": stable["model_hash"],
        "routing_path": ROUTING_FILE,
    }
    return replace(
        spec,
        engine_hash=stable["model_hash"],
        gateway_config=config,
        routing=routing,
        canary_engine_hash=canary["model_hash"] if other_model else None,
        canary_replicas=max(1, math.ceil(spec.replicas_min * weight / 100)),
    )
