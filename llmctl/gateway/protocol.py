"""The gateway's wire formats as pydantic models, kept apart from serving (in the manner of vLLM's
``entrypoints/openai/protocol.py``): what a caller may send to ``POST /v1/ask`` and the
OpenAI-compatible ``POST /v1/chat/completions``, and what comes back from either.

Why the request bodies are validated here by ``parse_request`` and not by FastAPI's body
injection: the gateway must authenticate (401) and rate-limit (429) before it reads a byte of the
body, and must read it under ``max_request_bytes`` (413) before it parses it; FastAPI reads and
validates a declared body before any handler code runs. So the pipeline reads the body itself and
then hands the decoded object to these models. Every validation failure becomes one ``Refusal``
(400, ``bad_request``) carrying the first failing rule's message, in the order the fields are
declared (question, then ``top_k``, then ``stream``; for chat the ``messages`` come first), with
the same messages the gateway has always sent.

The validators are deliberately strict where pydantic would coerce: ``"3"`` or ``2.0`` is not a
``top_k`` and ``1`` is not a ``stream`` flag; unknown keys are ignored (OpenAI clients send
``model``, ``temperature`` and more).

Bodies that ``json.loads`` accepts are not all usable, and each must still be a 400 with its one
audit record, never a 500: a lone surrogate (``"\\ud800"``) decodes to a ``str`` that cannot be
encoded to UTF-8 later (the audit hash, the embedder, Triton), so it is refused where a string is
validated; nesting deeper than the interpreter's recursion limit and integers longer than its
int-digits limit fail inside ``json.loads`` itself and are refused there. Any other exception
while decoding or validating is a 400 too: the body, not the gateway, is what is wrong.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError


class Refusal(Exception):
    """Ends a request early with a status, an outcome and a message safe to show the caller."""

    def __init__(
        self, status: int, outcome: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message
        self.headers = headers or {}


class BadRequest(Refusal):
    """A body its model rejects. ``question`` is the valid question it carried, if any: the audit
    record of a request refused for its ``top_k`` still names (the hash of) what was asked."""

    def __init__(self, message: str, question: str | None = None) -> None:
        super().__init__(400, "bad_request", message)
        self.question = question


log = logging.getLogger("llmctl.gateway")


def _bad(message: str) -> PydanticCustomError:
    return PydanticCustomError("bad_request", message)


# A str from json.loads holds a surrogate code point only where the JSON had an unpaired
# "\ud800"-"\udfff" escape (paired escapes decode to one code point; raw UTF-8 cannot carry one).
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` cannot be encoded to UTF-8 because of an unpaired surrogate."""
    return _SURROGATE.search(text) is not None


# -- requests -----------------------------------------------------------------------------------


class GatewayRequest(BaseModel):
    """What both endpoints come down to: one question, how many sources, streamed or not."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Missing is reported like an empty question, hence a default that is validated.
    question: str = Field(default=None, validate_default=True)
    top_k: int | None = None  # None: the gateway's default_top_k; larger values are clamped
    stream: bool = False

    @field_validator("question", mode="before")
    @classmethod
    def _question(cls, value: Any, info: ValidationInfo) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _bad("'question' must be a non-empty string")
        context = info.context if isinstance(info.context, dict) else {}
        limit = context.get("max_question_chars")
        if limit is not None and len(value) > limit:
            raise _bad(f"question longer than {limit} characters")
        if has_lone_surrogate(value):
            raise _bad("'question' contains a lone surrogate (an unpaired \\ud800-\\udfff escape)")
        context["question"] = value.strip()  # for BadRequest.question if a later field fails
        return value.strip()

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k(cls, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad("'top_k' must be a positive integer")
        return value

    @field_validator("stream", mode="before")
    @classmethod
    def _stream(cls, value: Any) -> bool:
        if not isinstance(value, bool):  # an explicit null is refused too
            raise _bad("'stream' must be true or false")
        return value


class AskRequest(GatewayRequest):
    """``POST /v1/ask``: ``{"question": str, "top_k"?: int, "stream"?: bool}``."""


class ChatCompletionRequest(GatewayRequest):
    """``POST /v1/chat/completions``: OpenAI's ``messages`` (plus the gateway's ``top_k``).

    The gateway answers the last message with role ``user`` (its text parts joined when the
    content is a list of OpenAI content parts); earlier turns and other roles are not looked at,
    so they are not validated either. ``question`` is derived, never read from the body. A text
    part's ``text`` must be a string (a missing one counts as empty), and the content may not
    carry a lone surrogate: both are named here, not as a bad ``question`` the caller never sent.
    """

    messages: list[Any]

    @model_validator(mode="before")
    @classmethod
    def _last_user_message(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("'messages' must be a non-empty list")
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):  # OpenAI content parts
                    texts = [
                        p.get("text", "")
                        for p in content
                        if isinstance(p, dict) and p.get("type") == "text"
                    ]
                    if not all(isinstance(t, str) for t in texts):
                        raise _bad("the 'text' of a text content part must be a string")
                    content = " ".join(texts)
                if isinstance(content, str) and has_lone_surrogate(content):
                    raise _bad(
                        "message content contains a lone surrogate "
                        "(an unpaired \\ud800-\\udfff escape)"
                    )
                return {**data, "question": content}
        raise _bad("no message with role 'user'")


RequestT = TypeVar("RequestT", bound=GatewayRequest)


def json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is not one), or a 400 refusal.

    ``json.loads`` enforces two interpreter limits with exceptions of its own: nesting deeper
    than the recursion limit (``RecursionError``) and integers longer than the int-digits limit
    (a plain ``ValueError``, 4,300 digits by default). Both are the body's fault: 400."""
    try:
        data = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Refusal(400, "bad_request", "body is not valid JSON") from None
    except RecursionError:
        raise Refusal(400, "bad_request", "body is nested too deeply") from None
    except ValueError:  # only the int-digits limit is left (decode errors are caught above)
        raise Refusal(400, "bad_request", "body holds a number with too many digits") from None
    except Exception as exc:  # anything else json.loads may raise: still the body's fault
        log.warning("unexpected %s while decoding a request body", type(exc).__name__)
        raise Refusal(400, "bad_request", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Refusal(400, "bad_request", "body must be a JSON object")
    return data


def parse_request(
    model: type[RequestT], body: dict[str, Any], *, max_question_chars: int
) -> RequestT:
    """Validate a decoded body against ``model``; the first failing rule becomes a BadRequest."""
    context: dict[str, Any] = {"max_question_chars": max_question_chars}
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        message = errors[0]["msg"] if errors else "invalid request body"
        raise BadRequest(message, context.get("question")) from None
    except Exception as exc:  # a validator tripped over a shape no rule names: the body's fault
        log.warning("unexpected %s while validating a request body", type(exc).__name__)
        raise BadRequest("invalid request body", context.get("question")) from None


# -- responses ----------------------------------------------------------------------------------


class Citation(BaseModel):
    """One source the model was shown, in the numbering it saw (``prompt.Source.citation``)."""

    model_config = ConfigDict(extra="allow")

    doc_id: str
    title: str
    path: str
    heading: str
    chunk_id: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int  # counted with the served model's tokenizer, else an upper bound
    completion_tokens: int
    total_tokens: int


class QuoteOut(BaseModel):
    """A verbatim span of source ``number``'s text (an exact substring of what the model saw)."""

    number: int
    doc_id: str
    chunk_id: str
    text: str


class GroundingOut(BaseModel):
    """How well the generated text is supported by its cited text (``grounding.check``)."""

    mode: Literal["enforce", "report"]
    score: float  # share of the answer's sentences supported, 0..1
    grounded: bool
    unsupported: list[str]  # the sentences or facts (numbers, names) the sources do not back
    replaced: bool  # enforce: the generated text was withheld and the quotes returned instead


class AskResponse(BaseModel):
    """The native answer: the body of ``POST /v1/ask`` and its stream's ``final`` event. The
    pipeline builds this one result; the OpenAI dialect re-shapes it."""

    answer: str
    citations: list[Citation]
    request_id: str
    blueprint_hash: str
    engine_hash: str
    index_hash: str
    usage: Usage
    timings: dict[str, float]  # ms; ttft_ms only when a token was generated
    outcome: str
    # verbatim supporting passages, numbered like the citations (llmctl.gateway.grounding)
    quotes: list[QuoteOut] = Field(default_factory=list)
    grounding: GroundingOut | None = None  # None: nothing was generated (no source, refusals)
    # why the model stopped: "stop" (done) or "length" (cut at the output budget); None when
    # nothing was generated or the model did not say
    finish_reason: str | None = None
    revision: str | None = None  # the revision that answered (llmctl history names it)


class AskError(BaseModel):
    """A refusal on ``/v1/ask``, and the ``error`` event ending a failed stream on both APIs."""

    error: str
    outcome: str
    request_id: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str  # the gateway's outcome, e.g. "unauthorized"
    code: int  # the HTTP status


class OpenAIError(BaseModel):
    """A refusal on ``/v1/chat/completions``, shaped like OpenAI's errors."""

    error: OpenAIErrorDetail
    request_id: str


class LlmctlInfo(BaseModel):
    """The gateway's own fields of an OpenAI-shaped answer (provenance, timings, outcome)."""

    request_id: str
    blueprint_hash: str
    engine_hash: str
    index_hash: str
    timings: dict[str, float]
    outcome: str
    quotes: list[QuoteOut] = Field(default_factory=list)
    grounding: GroundingOut | None = None
    revision: str | None = None


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessage
    finish_reason: str = "stop"


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str  # the blueprint's name
    choices: list[ChatChoice]
    usage: Usage
    citations: list[Citation]
    llmctl: LlmctlInfo


class DeltaMessage(BaseModel):
    """A chunk's delta: role only on the first, nothing on the last; absent keys are left out."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatStreamChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None  # sent as null until the last chunk


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatStreamChoice]


class ChatCompletionFinalChunk(ChatCompletionChunk):
    """The last chunk before ``[DONE]``: it also carries usage, citations and provenance."""

    usage: Usage
    citations: list[Citation]
    llmctl: LlmctlInfo
