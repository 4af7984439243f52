"""Mapping a blueprint to a SizingRequest (docs/BLUEPRINT_MODEL.md names the attributes).

Kept apart from the planner so the planner never depends on the blueprint model, and the
mapping's choices (requests in flight from people and request rates, growth, "auto", retrieval
budget, execution backend) are visible in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmctl.sizing.load import Load, peak_in_flight
from llmctl.sizing.planner import SizingRequest

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

_AUTO = {None, "auto"}
# engine.backend values that mean prebuilt TensorRT engines; anything else (the default
# "tensorrt-llm", "pytorch") is TensorRT-LLM's PyTorch backend, its only one since 2026.
_ENGINE_BACKENDS = {"tensorrt", "tensorrt-engine", "trt", "engine"}


def sizing_backend(engine: Any) -> str:
    """The execution backend ``engine.backend`` names, as the sizing model spells it."""
    backend = str(getattr(engine, "backend", "") or "").lower()
    return "tensorrt" if backend in _ENGINE_BACKENDS else "pytorch"


def _opt(value: Any) -> Any:
    return None if value in _AUTO else value


def request_from_blueprint(bp: Blueprint) -> SizingRequest:
    """Build the planner's request from a blueprint.

    The configuration (and its cost, against the budget) is sized for today's peak; growth
    (``users.growth_factor``) should fit under the autoscaling ceiling ``replicas.max``.
    Retrieval's latency budget counts only when retrieval is enabled; a fixed
    precision, quantisation, GPU or TP narrows the search, ``auto`` leaves it open.
    """
    req = bp.requirements
    model = bp.model
    engine = bp.engine
    cap = bp.capacity
    retrieval = bp.retrieval

    precisions: tuple[str, ...] | None = None
    if _opt(model.precision):
        precisions = (model.precision,)
    quant = _opt(engine.quantization)
    if quant and quant != "none":
        precisions = (quant,)

    gpus: tuple[str, ...] | None = None
    if _opt(cap.gpu):
        gpus = (cap.gpu,)
    elif getattr(cap, "gpu_candidates", None):
        gpus = tuple(cap.gpu_candidates)

    tp = _opt(getattr(engine, "tensor_parallel", None)) if engine is not None else None
    growth = float(getattr(req.users, "growth_factor", 1) or 1)
    load = blueprint_load(bp)
    retrieval_ms = 0.0
    if retrieval.enabled:
        retrieval_ms = float(retrieval.latency_budget_ms or 0)
    replicas = cap.replicas
    kv_fraction = getattr(engine, "kv_cache_free_gpu_mem_fraction", None) if engine else None
    return SizingRequest(
        model=model.id,
        isl=int(model.max_input_tokens),
        osl=int(model.max_output_tokens),
        **load_fields(load),
        backend=sizing_backend(engine),
        growth_factor=growth,
        ttft_p95_ms=float(req.slo.ttft_p95_ms),
        latency_p95_ms=float(req.slo.latency_p95_ms),
        retrieval_budget_ms=retrieval_ms,
        precisions=precisions,
        gpus=gpus,
        tp=int(tp) if tp else None,
        replicas_min=int(replicas.min),
        replicas_max=int(replicas.max),
        monthly_budget_usd=cap.monthly_budget_usd,
        headroom=float(cap.headroom),
        gpu_prices=dict(cap.gpu_prices or {}),
        kv_fraction=float(kv_fraction) if kv_fraction else None,
    )


def blueprint_load(
    bp: Blueprint,
    *,
    peak_concurrent: int | None = None,
    concurrent: int | None = None,
    requests_per_day: int | None = None,
) -> Load:
    """Requests in flight at the blueprint's peak (keywords: a growth phase's own figures)."""
    users = bp.requirements.users
    explicit = peak_concurrent or concurrent or requests_per_day
    return peak_in_flight(
        peak_concurrent=peak_concurrent if explicit else users.peak_concurrent,
        concurrent=concurrent if explicit else users.concurrent,
        requests_per_day=requests_per_day if explicit else users.requests_per_day,
        peak_hour_share=float(users.peak_hour_share),
        latency_s=float(bp.requirements.slo.latency_p95_ms) / 1000.0,
        think_time_s=getattr(users, "think_time_s", None),
        peak_rps=None if explicit else getattr(users, "peak_requests_per_s", None),
    )


def load_fields(load: Load) -> dict[str, Any]:
    """The SizingRequest fields a Load sets: requests in flight (closed loop), or an arrival
    rate / people with a think time (open loop, requests in flight from predicted latency)."""
    return {
        "peak_concurrency": max(1, load.in_flight),
        "load_basis": load.basis,
        "peak_rate_per_s": load.peak_rate_per_s,
        "think_users": load.think_users,
        "think_time_s": load.think_time_s,
    }
