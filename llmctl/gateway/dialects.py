"""The gateway's two response dialects over one answer pipeline, and its SSE framing.

The pipeline (``llmctl.gateway.app``) produces one result per request, an ``AskResponse``, and
never asks which endpoint it serves; a ``Dialect`` turns that result, each streamed delta and each
refusal into its endpoint's wire format:

- ``AskDialect``: the native ``/v1/ask`` (the result as is; streams as ``event: delta`` events and
  one ``event: final`` with the whole result);
- ``OpenAIDialect``: ``/v1/chat/completions`` in OpenAI's shapes (``chat.completion``, unnamed
  ``chat.completion.chunk`` events ending with ``data: [DONE]``), the gateway's extras under
  ``citations`` and ``llmctl``.

Both end a stream that fails after its status line the same way, with an ``event: error`` frame,
since an OpenAI stream has no error event of its own and the status can no longer change.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from llmctl.gateway.protocol import (
    AskError,
    AskRequest,
    AskResponse,
    ChatChoice,
    ChatCompletionChunk,
    ChatCompletionFinalChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    ChatStreamChoice,
    DeltaMessage,
    GatewayRequest,
    LlmctlInfo,
    OpenAIError,
    OpenAIErrorDetail,
    Refusal,
)

SSE_MEDIA_TYPE = "text/event-stream"
SSE_DONE = b"data: [DONE]\n\n"


def sse(event: str | None, data: Any) -> bytes:
    """One server-sent event; the only place the gateway frames one."""
    prefix = f"event: {event}\n" if event else ""
    # ASCII-only JSON: no raw U+2028 or other exotic line breaks a client's line splitter may honour
    return f"{prefix}data: {json.dumps(data, ensure_ascii=True)}\n\n".encode()


class Dialect(ABC):
    """How one endpoint speaks: its request model, its bodies and its stream events."""

    endpoint: ClassVar[str]  # the audit record's endpoint and the metrics label
    request_model: ClassVar[type[GatewayRequest]]

    @abstractmethod
    def body(self, result: AskResponse) -> dict[str, Any]:
        """The JSON body of a non-streamed answer."""

    @abstractmethod
    def error_body(self, refusal: Refusal, request_id: str) -> dict[str, Any]:
        """The JSON body of a refusal (sent with ``refusal.status``)."""

    @abstractmethod
    def delta(self, text: str, first: bool, request_id: str) -> bytes:
        """The event carrying one streamed piece of the answer."""

    @abstractmethod
    def final(self, result: AskResponse) -> list[bytes]:
        """The events ending a stream that succeeded (sent after the audit record is on disk)."""

    def stream_error(self, refusal: Refusal, request_id: str) -> bytes:
        """The event ending a stream that failed after its 200 status line went out."""
        error = AskError(error=refusal.message, outcome=refusal.outcome, request_id=request_id)
        return sse("error", error.model_dump())


class AskDialect(Dialect):
    """The native API: the result is the body; streams are ``delta`` events then ``final``."""

    endpoint = "ask"
    request_model = AskRequest

    def body(self, result: AskResponse) -> dict[str, Any]:
        return result.model_dump()

    def error_body(self, refusal: Refusal, request_id: str) -> dict[str, Any]:
        return AskError(
            error=refusal.message, outcome=refusal.outcome, request_id=request_id
        ).model_dump()

    def delta(self, text: str, first: bool, request_id: str) -> bytes:
        return sse("delta", {"delta": text})

    def final(self, result: AskResponse) -> list[bytes]:
        return [sse("final", result.model_dump())]


class OpenAIDialect(Dialect):
    """OpenAI's chat completions; ``model`` is the blueprint's name, ids derive from the
    request id so a chunk, the response headers and the audit record can be matched."""

    endpoint = "chat"
    request_model = ChatCompletionRequest

    def __init__(self, model: str) -> None:
        self.model = model

    def body(self, result: AskResponse) -> dict[str, Any]:
        return ChatCompletionResponse(
            id=f"chatcmpl-{result.request_id}",
            created=int(time.time()),
            model=self.model,
            choices=[
                ChatChoice(
                    message=ChatMessage(content=result.answer),
                    finish_reason=openai_finish(result.finish_reason),
                )
            ],
            usage=result.usage,
            citations=result.citations,
            llmctl=_llmctl(result),
        ).model_dump()

    def error_body(self, refusal: Refusal, request_id: str) -> dict[str, Any]:
        detail = OpenAIErrorDetail(
            message=refusal.message, type=refusal.outcome, code=refusal.status
        )
        return OpenAIError(error=detail, request_id=request_id).model_dump()

    def delta(self, text: str, first: bool, request_id: str) -> bytes:
        delta = (
            DeltaMessage(role="assistant", content=text) if first else DeltaMessage(content=text)
        )
        chunk = ChatCompletionChunk(
            id=f"chatcmpl-{request_id}",
            created=int(time.time()),
            model=self.model,
            choices=[ChatStreamChoice(delta=delta)],
        )
        return sse(None, chunk.model_dump())

    def final(self, result: AskResponse) -> list[bytes]:
        last = ChatCompletionFinalChunk(
            id=f"chatcmpl-{result.request_id}",
            created=int(time.time()),
            model=self.model,
            choices=[
                ChatStreamChoice(
                    delta=DeltaMessage(), finish_reason=openai_finish(result.finish_reason)
                )
            ],
            usage=result.usage,
            citations=result.citations,
            llmctl=_llmctl(result),
        )
        return [sse(None, last.model_dump()), SSE_DONE]


def openai_finish(reason: str | None) -> str:
    """OpenAI's ``finish_reason`` from the model's: ``length`` when the output budget cut the
    answer, ``stop`` otherwise (the LLM API's ``cancelled`` never reaches a finished answer)."""
    return "length" if reason == "length" else "stop"


def _llmctl(result: AskResponse) -> LlmctlInfo:
    return LlmctlInfo(
        request_id=result.request_id,
        blueprint_hash=result.blueprint_hash,
        engine_hash=result.engine_hash,
        index_hash=result.index_hash,
        timings=result.timings,
        outcome=result.outcome,
        quotes=result.quotes,
        grounding=result.grounding,
        revision=result.revision,
    )
