"""LLM-MODEL-001: the longest prompt plus the longest answer fit the model's context window.

Passing::

    model: {id: meta-llama/Llama-3.1-8B-Instruct, maxInputTokens: 4096, maxOutputTokens: 512}

Failing (Llama-2 has a 4,096-token context)::

    model: {id: meta-llama/Llama-2-7b-chat-hf, maxInputTokens: 4096, maxOutputTokens: 512}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext
from llmctl.blueprint.rules.common import architecture

RULE_ID = "LLM-MODEL-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    model = ctx.bp.model
    context = model.context_length
    if context is None:
        arch = architecture(model.id)
        context = getattr(arch, "max_position_embeddings", None) if arch else None
    if not context:
        return
    total = model.max_input_tokens + model.max_output_tokens
    if total > context:
        yield ctx.problem(
            ("model", "maxInputTokens"),
            f"maxInputTokens + maxOutputTokens = {total} exceeds {model.id}'s context of "
            f"{context} tokens; lower one of them or choose a model with a longer context",
        )
