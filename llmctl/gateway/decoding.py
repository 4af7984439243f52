"""Decoding settings for one question: how long an answer may be, and the sampler's options.

Why: a policy question has one right answer, so decoding is greedy with a fixed seed; a small
model left a long budget wanders and loops ("DAG is a data validation tool ..." four times), so
a question that asks for one figure gets a short budget and the sampler a frequency penalty. The
production client (TensorRT-LLM's LLM-API model) and the local stand-in (llama.cpp) both take
these; a client without them (a test double) gets none. Also the embedder the grounding check
uses, taken from the retriever so the stack serves one text-similarity model.
"""

from __future__ import annotations

import inspect
from typing import Any

import anyio

from llmctl.gateway import grounding
from llmctl.gateway.backends import LLMClient, Retriever
from llmctl.gateway.config import GatewayConfig
from llmctl.gateway.resilience import Pools

#: Questions that ask for one figure, date or name: a sentence or two answers them, and a long
#: generation only gives a small model room to wander.
_SHORT_ANSWER = grounding.ASKS_FACT
SHORT_ANSWER_TOKENS = 64


def output_tokens(question: str, max_output_tokens: int) -> int:
    """The output budget sized to the question: short for a figure, the full budget otherwise."""
    if _SHORT_ANSWER.search(question):
        return min(max_output_tokens, SHORT_ANSWER_TOKENS)
    return max_output_tokens


def sampling_options(llm: LLMClient, config: GatewayConfig) -> dict[str, Any]:
    """The repetition-control and seed options the LLM client takes (those its ``stream``
    names): the production client and the stand-in map them onto their samplers; a client
    without them (a test double) gets none."""
    try:
        params = inspect.signature(llm.stream).parameters
    except (TypeError, ValueError):
        return {}
    wanted = {
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
        "seed": config.seed,
    }
    return {k: v for k, v in wanted.items() if k in params and v is not None}


def answer_embedder(retriever: Retriever, pools: Pools) -> grounding.AsyncEmbed | None:
    """The retriever's embedder (the one model the stack serves for text similarity) as an
    async call, for the grounding check's rare sentences; None when the retriever has none."""
    embedder = getattr(retriever, "embedder", None) or getattr(retriever, "_embedder", None)
    if embedder is None:
        return None
    aembed = getattr(embedder, "aembed", None)
    if aembed is not None:
        return aembed  # type: ignore[no-any-return]
    embed = getattr(embedder, "embed", None)
    if embed is None:
        return None

    async def in_thread(texts: list[str]) -> Any:
        return await anyio.to_thread.run_sync(embed, texts, limiter=pools.index)

    return in_thread
