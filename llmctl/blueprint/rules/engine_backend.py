"""LLM-ENGINE-001: TensorRT engines need a TensorRT-LLM release that still ships trtllm-build.

TensorRT-LLM removed its TensorRT engine backend after 1.3.0rc20 (migration guide "TensorRT
Backend Removed"): later releases have no trtllm-build, no convert_checkpoint.py and no
inflight-batcher ensemble, so ``engine.backend: tensorrt`` with such an image would fail only after
the engine Job pulled a 20 GB image. llmctl knows the release of every ``-trtllm-python-py3`` tag
up to the newest in ``llmctl.engine.spec.TRTLLM_BY_TRITON_TAG``; a newer or unrecognised image
fails closed.

Passing::

    engine: {backend: tensorrt, tritonImage: "nvcr.io/nvidia/tritonserver:24.12-trtllm-python-py3"}

Failing::

    engine: {backend: tensorrt, tritonImage: "nvcr.io/nvidia/tritonserver:26.10-trtllm-python-py3"}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-ENGINE-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    engine = ctx.bp.engine
    if engine.backend != "tensorrt":
        return
    from llmctl.engine.spec import NEWEST_KNOWN_TAG, TRTLLM_BY_TRITON_TAG, engine_build_problem

    why = engine_build_problem(engine.triton_image)
    if why is None:
        return
    pinned = f"nvcr.io/nvidia/tritonserver:{NEWEST_KNOWN_TAG}-trtllm-python-py3"
    yield ctx.problem(
        ("engine", "backend"),
        f"engine.backend tensorrt needs trtllm-build, but {why}; use engine.backend: pytorch, or "
        f"pin engine.tritonImage to {pinned} (TensorRT-LLM "
        f"{TRTLLM_BY_TRITON_TAG[NEWEST_KNOWN_TAG]}) or an older listed release",
    )
