"""The gateway's wire formats (``protocol``, ``dialects``) and its client (``client``).

The models are tested directly for the rules and messages the gateway has always applied (the
first failing rule wins, in the order the pipeline used to check them). The client is tested
against the real app under uvicorn on 127.0.0.1 (``ServerThread``): real auth, audit and SSE.
Only the collaborators are in-process: a fixed list of ACL-tagged hits as the retriever (the index
is covered in test_gateway_http.py) and ``EchoLLM`` (see test_gateway_support.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import field_validator
from test_gateway_support import LEAVE_HIT, EchoLLM, ServerThread, closed_port, make_config, token

from llmctl.errors import LlmctlError
from llmctl.gateway import protocol
from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.client import AsyncGatewayClient, GatewayClient, parse_sse
from llmctl.gateway.config import LimitsConfig
from llmctl.gateway.dialects import AskDialect, OpenAIDialect, sse
from llmctl.gateway.protocol import (
    AskRequest,
    AskResponse,
    BadRequest,
    ChatCompletionRequest,
    Refusal,
    Usage,
    json_object,
    parse_request,
)

# -- request models -----------------------------------------------------------------------------


def _parse(model: type, body: dict[str, Any], limit: int = 20) -> Any:
    return parse_request(model, body, max_question_chars=limit)


def _refused(model: type, body: dict[str, Any], limit: int = 20) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        _parse(model, body, limit)
    assert (info.value.status, info.value.outcome) == (400, "bad_request")
    return info.value


LONE_SURROGATE = "{} contains a lone surrogate (an unpaired \\ud800-\\udfff escape)"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'question' must be a non-empty string"),
        ({"question": None}, "'question' must be a non-empty string"),
        ({"question": "   "}, "'question' must be a non-empty string"),
        ({"question": 5}, "'question' must be a non-empty string"),
        ({"question": "a" * 21}, "question longer than 20 characters"),
        ({"question": "q", "top_k": 0}, "'top_k' must be a positive integer"),
        ({"question": "q", "top_k": True}, "'top_k' must be a positive integer"),
        ({"question": "q", "top_k": 2.0}, "'top_k' must be a positive integer"),
        ({"question": "q", "top_k": "3"}, "'top_k' must be a positive integer"),
        ({"question": "q", "stream": 1}, "'stream' must be true or false"),
        ({"question": "q", "stream": None}, "'stream' must be true or false"),
        ({"question": "", "top_k": 0, "stream": "x"}, "'question' must be a non-empty string"),
        ({"question": "q", "top_k": 0, "stream": "x"}, "'top_k' must be a positive integer"),
        ({"question": "hi \ud800"}, LONE_SURROGATE.format("'question'")),
        ({"question": "\udfff", "top_k": 0}, LONE_SURROGATE.format("'question'")),
    ],
)
def test_ask_request_rules_and_their_order(body: dict[str, Any], message: str) -> None:
    assert _refused(AskRequest, body).message == message


def test_ask_request_defaults_strip_and_ignore_unknown_keys() -> None:
    asked = _parse(AskRequest, {"question": "  what?  ", "top_k": None, "model": "x"})
    assert (asked.question, asked.top_k, asked.stream) == ("what?", None, False)
    # the length limit applies to the question as sent, not as stripped
    assert _refused(AskRequest, {"question": " " * 19 + "ab"}).message.startswith("question longer")


def test_a_valid_question_is_kept_when_a_later_field_fails() -> None:
    """The audit record of a request refused for its top_k still hashes the question."""
    assert _refused(AskRequest, {"question": " q ", "top_k": 0}).question == "q"
    assert _refused(AskRequest, {"question": "", "top_k": 0}).question is None


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def TEXT(text: Any) -> dict[str, Any]:  # noqa: N802  (reads as a constructor in the tables)
    return {"type": "text", "text": text}


NOT_TEXT = "the 'text' of a text content part must be a string"


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "'messages' must be a non-empty list"),
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": {"role": "user"}}, "'messages' must be a non-empty list"),
        ({"messages": [5, {"role": "system", "content": "s"}]}, "no message with role 'user'"),
        ({"messages": [{"role": "user"}]}, "'question' must be a non-empty string"),
        ({"messages": [_user([{"type": "image_url"}])]}, "'question' must be a non-empty string"),
        ({"messages": [{"role": "x"}], "top_k": 0}, "no message with role 'user'"),
        ({"messages": [_user("")], "top_k": 0}, "'question' must be a non-empty string"),
        (
            {"messages": [_user("q")], "top_k": "1", "stream": 3},
            "'top_k' must be a positive integer",
        ),
        ({"messages": [_user([TEXT(5)])]}, NOT_TEXT),
        ({"messages": [_user([TEXT("a"), TEXT(None)])]}, NOT_TEXT),
        ({"messages": [_user([TEXT({"x": 1}), TEXT("")])], "top_k": 0}, NOT_TEXT),
        ({"messages": [_user("hi \ud800")]}, LONE_SURROGATE.format("message content")),
        (
            {"messages": [_user([TEXT("a"), TEXT("\udc00")])]},
            LONE_SURROGATE.format("message content"),
        ),
    ],
)
def test_chat_request_rules_and_their_order(body: dict[str, Any], message: str) -> None:
    assert _refused(ChatCompletionRequest, body).message == message


def test_chat_request_answers_the_last_user_message() -> None:
    parts = [
        {"type": "text", "text": "how"},
        {"type": "image_url"},
        5,
        {"type": "text", "text": "so"},
    ]
    body = {
        "messages": [_user("first"), {"role": "assistant", "content": 7}, _user(parts), 5],
        "question": "ignored: the question is derived from the messages",
        "stream": True,
        "temperature": 0.2,
    }
    asked = _parse(ChatCompletionRequest, body, limit=100)
    assert (asked.question, asked.stream, asked.top_k) == ("how so", True, None)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "body is not valid JSON"),
        (b'{"question": "\xff"}', "body is not valid JSON"),
        (b"", "body must be a JSON object"),
        (b"[1]", "body must be a JSON object"),
    ],
)
def test_json_object(raw: bytes, message: str) -> None:
    with pytest.raises(Refusal, match=message):
        json_object(raw)
    assert json_object(b'{"a": 1}') == {"a": 1}


DEEP = b'{"question": "q", "x": ' + b"[" * 8000 + b"]" * 8000 + b"}"  # 16,024 bytes
LONG_INT = b'{"question": "q", "top_k": ' + b"7" * 5000 + b"}"


@pytest.mark.parametrize(
    "raw, message",
    [
        (DEEP, "body is nested too deeply"),  # json.loads: RecursionError
        (LONG_INT, "body holds a number with too many digits"),  # the int-digits ValueError
    ],
)
def test_json_object_interpreter_limits_are_400(raw: bytes, message: str) -> None:
    with pytest.raises(Refusal) as info:
        json_object(raw)
    assert (info.value.status, info.value.outcome, info.value.message) == (
        400,
        "bad_request",
        message,
    )


def test_a_lone_surrogate_is_refused_and_a_pair_accepted() -> None:
    """json.loads joins an escaped pair into one code point; only an unpaired half is refused
    (it could never be encoded to UTF-8 for the audit hash, the embedder or the model)."""
    body = json_object(
        b'{"question": "hi \\ud83d\\ude00", "messages": [{"role": "user", '
        b'"content": [{"type": "text", "text": "\\ud83d\\ude00"}]}]}'
    )
    assert _parse(AskRequest, body).question == "hi \U0001f600"
    assert _parse(ChatCompletionRequest, body).question == "\U0001f600"
    body = json_object(b'{"question": "hi \\ud800"}')
    assert _refused(AskRequest, body).message == LONE_SURROGATE.format("'question'")
    assert _refused(AskRequest, body).question is None  # nothing unencodable reaches the audit


def test_any_other_failure_while_decoding_or_validating_is_a_400(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shape no rule names must still be the caller's 400, never the gateway's 500."""

    class Tripping(AskRequest):
        @field_validator("top_k", mode="before")
        @classmethod
        def _top_k(cls, value: Any) -> Any:
            raise TypeError("a validator bug")

    refused = _refused(Tripping, {"question": " q ", "top_k": 1})
    assert (refused.message, refused.question) == ("invalid request body", "q")

    def loads(raw: bytes) -> Any:
        raise OverflowError("something json.loads was never expected to raise")

    monkeypatch.setattr(protocol, "json", SimpleNamespace(loads=loads, JSONDecodeError=ValueError))
    with pytest.raises(Refusal) as info:
        json_object(b"{}")
    assert (info.value.status, info.value.message) == (400, "body is not valid JSON")


# -- dialects -----------------------------------------------------------------------------------


def _result(**changes: Any) -> AskResponse:
    values: dict[str, Any] = {
        "answer": "Twenty weeks [1]",
        "citations": [
            {
                "doc_id": "hr/leave",
                "title": "Leave",
                "path": "hr/leave.md",
                "heading": "",
                "chunk_id": "hr/leave#0",
                "score": 0.9,
            }
        ],
        "request_id": "r1",
        "blueprint_hash": "b",
        "engine_hash": "e",
        "index_hash": "i",
        "usage": Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5),
        "timings": {"total_ms": 1.0},
        "outcome": "answered",
    }
    return AskResponse(**{**values, **changes})


def _data(frame: bytes) -> Any:
    (event,) = parse_sse(frame.decode().split("\n"))
    return event.data


def test_sse_frames_are_ascii_json_on_one_line() -> None:
    frame = sse("delta", {"delta": "a\u2028b é"})
    assert frame == b'event: delta\ndata: {"delta": "a\\u2028b \\u00e9"}\n\n'
    assert sse(None, {"x": 1}) == b'data: {"x": 1}\n\n'


def test_ask_dialect_shapes() -> None:
    ask = AskDialect()
    result = _result()
    assert list(ask.body(result)) == [
        "answer",
        "citations",
        "request_id",
        "blueprint_hash",
        "engine_hash",
        "index_hash",
        "usage",
        "timings",
        "outcome",
        "quotes",
        "grounding",
        "finish_reason",
        "revision",
    ]
    assert ask.delta("x", True, "r1") == b'event: delta\ndata: {"delta": "x"}\n\n'
    (final,) = ask.final(result)
    assert final.startswith(b"event: final\n") and _data(final) == ask.body(result)
    refusal = Refusal(503, "unavailable", "the model is unavailable")
    assert ask.error_body(refusal, "r1") == {
        "error": "the model is unavailable",
        "outcome": "unavailable",
        "request_id": "r1",
    }


def test_openai_dialect_shapes() -> None:
    chat = OpenAIDialect("hr-assistant")
    result = _result()
    body = chat.body(result)
    assert body["object"] == "chat.completion" and body["model"] == "hr-assistant"
    assert body["id"] == "chatcmpl-r1" and isinstance(body["created"], int)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Twenty weeks [1]"},
            "finish_reason": "stop",
        }
    ]
    assert body["llmctl"] == {
        "request_id": "r1",
        "blueprint_hash": "b",
        "engine_hash": "e",
        "index_hash": "i",
        "timings": {"total_ms": 1.0},
        "outcome": "answered",
        "quotes": [],
        "grounding": None,
        "revision": None,
    }
    first, later = _data(chat.delta("Tw", True, "r1")), _data(chat.delta("enty", False, "r1"))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": "Tw"}, "finish_reason": None}
    ]
    assert later["choices"][0]["delta"] == {"content": "enty"}
    last, done = chat.final(result)
    assert done == b"data: [DONE]\n\n"
    last_data = _data(last)
    assert last_data["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert {k: last_data[k] for k in ("usage", "citations", "llmctl")} == {
        k: body[k] for k in ("usage", "citations", "llmctl")
    }
    refusal = Refusal(401, "unauthorized", "missing bearer token")
    assert chat.error_body(refusal, "r1") == {
        "error": {"message": "missing bearer token", "type": "unauthorized", "code": 401},
        "request_id": "r1",
    }
    # a stream that fails after its 200 ends the same way in both dialects
    assert chat.stream_error(refusal, "r1") == AskDialect().stream_error(refusal, "r1")


# -- the client against the real app ------------------------------------------------------------

HITS = (
    LEAVE_HIT,
    {
        "doc_id": "fin/limits",
        "chunk_id": "fin/limits#0",
        "title": "Expense limits",
        "heading": "",
        "path": "fin/limits.md",
        "text": "Expenses above five thousand euros need the CFO.",
        "score": 0.8,
        "chunk_hash": "h2",
        "acl": ("finance",),
    },
)


class FixedHits:
    """The retriever: the hits above, with the ACL prefilter a real index applies."""

    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        return [h for h in HITS if set(h["acl"]) & set(groups)][:top_k]

    def ready(self) -> tuple[bool, str]:
        return True, ""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    state = tmp_path_factory.mktemp("client-state")
    config = make_config(
        state,
        limits=LimitsConfig(
            max_request_bytes=4096,
            min_score=0.2,
            context_tokens=4096,
            max_input_tokens=3000,
            max_output_tokens=16,
        ),
    )
    with ServerThread(create_app(config, retriever=FixedHits(), llm=EchoLLM())) as server:
        yield server.url, state


def _audited(state: Path, request_id: str | None) -> bool:
    return any(r["request_id"] == request_id for r in read_records(state / "audit" / "audit.jsonl"))


def test_client_ask_and_refusals(gateway: tuple[str, Path]) -> None:
    url, state = gateway
    with GatewayClient(url, token(state, "alice", ["hr"]), timeout=30) as client:
        r = client.ask("How long is parental leave?", top_k=3)
        assert r.ok and r.body["outcome"] == "answered" and r.request_id == r.body["request_id"]
        assert [c["doc_id"] for c in r.body["citations"]] == ["hr/leave"]
        assert _audited(state, r.request_id)
        r = client.ask("q", top_k=0)
        assert (r.status, r.body["error"]) == (400, "'top_k' must be a positive integer")
        assert client.ask("x" * 5000).status == 413
        r = client.chat("q", token="not-a-token")
        assert r.status == 401 and r.body["error"]["type"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert client.healthz().body == {"status": "ok"}
        assert client.readyz().body == {
            "status": "ready",
            "llm": "ready",
            "index": "ready",
            "audit": "ready",
        }
    with GatewayClient(url) as anonymous:
        r = anonymous.ask("q")
        assert (r.status, r.body["outcome"]) == (401, "unauthorized")


def test_client_streams_and_the_audit_comes_first(gateway: tuple[str, Path]) -> None:
    """Compliance: when a caller sees the end of an answer, its audit record is on disk."""
    url, state = gateway
    with GatewayClient(url, token(state, "bob", ["hr", "finance"]), timeout=30) as client:
        with client.stream_ask("What about leave and expenses?") as stream:
            assert stream.status == 200
            kinds = []
            for event in stream:
                kinds.append(event.event)
                if event.event == "final":
                    assert _audited(state, stream.request_id)
                    assert event.data["outcome"] == "answered"
        assert kinds[-1] == "final" and set(kinds[:-1]) == {"delta"}

        r = client.ask("What about leave?", stream=True)
        assert r.ok and r.body["outcome"] == "answered" and len(r.body["citations"]) == 2
        assert r.events[-1].event == "final" and r.body == r.events[-1].data

        with client.stream_chat([_user("What about expenses?")]) as stream:
            events = list(stream)
        assert events[-1].done and _audited(state, stream.request_id)
        assert events[0].data["choices"][0]["delta"]["role"] == "assistant"
        assert events[-2].data["llmctl"]["outcome"] == "answered"

        r = client.chat("What about expenses?", stream=True)
        assert r.ok and r.body["choices"][0]["finish_reason"] == "stop" and r.body["citations"]

        r = client.ask("", stream=True)  # refused before streaming: a JSON error, no events
        assert (r.status, r.events, r.body["outcome"]) == (400, (), "bad_request")


def test_async_client(gateway: tuple[str, Path]) -> None:
    url, state = gateway

    async def main() -> list[Any]:
        async with AsyncGatewayClient(
            url, token(state, "carol", ["finance"]), timeout=30, max_connections=4
        ) as client:
            return await asyncio.gather(
                client.ask("Expenses?"),
                client.ask("Expenses?", stream=True),
                client.chat("Expenses?"),
                client.chat("Expenses?", stream=True),
                client.readyz(),
            )

    ask, ask_streamed, chat, chat_streamed, ready = asyncio.run(main())
    assert all(r.ok for r in (ask, ask_streamed, chat, chat_streamed, ready))
    assert ask.body["citations"] == ask_streamed.body["citations"] == chat.body["citations"]
    assert chat_streamed.body["llmctl"]["outcome"] == "answered"


def test_unreachable_gateway_is_one_line_llmctl_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with GatewayClient(url, timeout=5) as client, pytest.raises(LlmctlError) as info:
        client.ask("q")
    message = str(info.value)
    assert (
        message.startswith(f"cannot reach the gateway at {url}: ConnectError")
        and "\n" not in message
    )
    with GatewayClient(url, timeout=5) as client, pytest.raises(LlmctlError):
        with client.stream_ask("q"):
            pass

    async def main() -> None:
        async with AsyncGatewayClient(url, timeout=5) as client:
            await client.ask("q", stream=True)

    with pytest.raises(LlmctlError):
        asyncio.run(main())


def test_parse_sse_matches_the_gateway_framing() -> None:
    raw = sse("delta", {"delta": "a"}) + sse(None, {"b": 2}) + b"data: [DONE]"  # no last blank
    expected = [("delta", {"delta": "a"}), (None, {"b": 2}), (None, "[DONE]")]
    for lines in (raw.decode().splitlines(), raw.splitlines()):  # str, or bytes as Locust reads
        events = list(parse_sse(lines))
        assert [(e.event, e.data) for e in events] == expected
        assert [e.done for e in events] == [False, False, True]
