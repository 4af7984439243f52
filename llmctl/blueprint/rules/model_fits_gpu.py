"""LLM-MODEL-003: the model fits the chosen GPU at its precision and tensor parallelism.

Checked only when the blueprint pins all three (gpu, precision, tensorParallel); with ``auto``
the capacity planner chooses a configuration that fits.

Passing::

    model: {id: meta-llama/Llama-3.1-70B-Instruct, precision: fp8}
    engine: {tensorParallel: 2}
    capacity: {gpu: H100-SXM-80GB}

Failing (70B parameters in bf16 are 141 GB; one 80 GB GPU cannot hold them)::

    model: {id: meta-llama/Llama-3.1-70B-Instruct, precision: bf16}
    engine: {tensorParallel: 1}
    capacity: {gpu: H100-SXM-80GB}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext
from llmctl.blueprint.rules.common import architecture, gpu

RULE_ID = "LLM-MODEL-003"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    bp = ctx.bp
    tp, precision, gpu_name = bp.engine.tensor_parallel, bp.model.precision, bp.capacity.gpu
    if tp == "auto" or precision == "auto" or gpu_name == "auto":
        return
    arch, card = architecture(bp.model.id), gpu(gpu_name)
    if arch is None:
        return
    if card is None:
        yield ctx.problem(
            ("capacity", "gpu"),
            f"unknown GPU '{gpu_name}'; llmctl size --help lists the catalogue, or use auto",
        )
        return
    from llmctl.sizing import check_fit
    from llmctl.sizing.blueprint import sizing_backend

    # The runtime reserve differs by backend (the PyTorch runtime keeps CUDA-graph pools).
    fit = check_fit(
        arch,
        card,
        precision,
        int(tp),
        bp.model.max_input_tokens,
        bp.model.max_output_tokens,
        backend=sizing_backend(bp.engine),
    )
    if not fit.fits:
        yield ctx.problem(
            ("capacity", "gpu"),
            f"{bp.model.id} at {precision} with tensorParallel {tp} does not fit on {gpu_name}: "
            f"{fit.reason}; raise tensorParallel, lower the precision, or set capacity.gpu: auto",
        )
