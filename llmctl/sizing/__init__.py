"""Capacity planning: which GPUs, how many, at what precision, and what latency to expect.

Public API (kept import-light: pure Python, no numpy/matplotlib/huggingface_hub at import, so
``llmctl check`` can call ``check_fit`` cheaply):

* ``load_architecture(model)`` and ``get_gpu(name, prices)`` resolve the inputs;
* ``check_fit(...)`` is the memory model's verdict, ``estimate(...)`` the performance model's;
* ``plan(SizingRequest(...))`` searches GPU x precision x TP x replicas for the cheapest
  configuration meeting every SLO; ``request_from_blueprint(bp)`` builds the request.
"""

from __future__ import annotations

from llmctl.sizing.architecture import Architecture, load_architecture
from llmctl.sizing.blueprint import request_from_blueprint
from llmctl.sizing.catalogue import Gpu, get_gpu, list_gpus
from llmctl.sizing.memory import FitResult, check_fit
from llmctl.sizing.performance import Estimate, estimate
from llmctl.sizing.planner import (
    Candidate,
    CapacityPlan,
    Rejection,
    SizingRequest,
    plan,
)

__all__ = [
    "Architecture",
    "CapacityPlan",
    "Candidate",
    "Estimate",
    "FitResult",
    "Gpu",
    "Rejection",
    "SizingRequest",
    "check_fit",
    "estimate",
    "get_gpu",
    "list_gpus",
    "load_architecture",
    "plan",
    "request_from_blueprint",
]
