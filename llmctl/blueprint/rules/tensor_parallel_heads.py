"""LLM-MODEL-002: tensor parallelism divides the model's attention heads.

TensorRT-LLM splits attention heads evenly across the GPUs of a replica; a TP that does not
divide them cannot be built.

Passing (Llama-3.1-70B has 64 heads)::

    model: {id: meta-llama/Llama-3.1-70B-Instruct}
    engine: {tensorParallel: 4}

Failing::

    model: {id: meta-llama/Llama-3.1-70B-Instruct}
    engine: {tensorParallel: 3}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext
from llmctl.blueprint.rules.common import architecture

RULE_ID = "LLM-MODEL-002"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    tp = ctx.bp.engine.tensor_parallel
    if tp == "auto":
        return
    arch = architecture(ctx.bp.model.id)
    heads = getattr(arch, "num_heads", None) if arch else None
    if heads and heads % int(tp):
        options = [d for d in (1, 2, 4, 8, 16) if heads % d == 0]
        yield ctx.problem(
            ("engine", "tensorParallel"),
            f"tensorParallel {tp} does not divide {ctx.bp.model.id}'s {heads} attention heads; "
            f"use one of {', '.join(map(str, options))} or auto",
        )
