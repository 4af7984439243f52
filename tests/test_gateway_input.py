"""Malformed bodies over real HTTP: each is a 400 with a JSON message and exactly one audit record.

Every body here is one that ``json.loads`` accepts, or that fails inside it for an interpreter
limit rather than a syntax error, and that used to end as a 500 (with, for the lone surrogate,
no audit record at all). They are sent as raw bytes, so the escapes reach the gateway exactly as
a client wrote them, to both endpoints where the shape applies. The app runs under uvicorn on
127.0.0.1 (``ServerThread``) with real auth and audit; the retriever is a fixed hit list and the
LLM is ``EchoLLM``, both counting calls: a refused body must reach neither.

The last tests size prompts with the served GGUF's own tokenizer: a question of 1,950 emoji
(5,850 SmolLM2 tokens, 650 by the old three-characters-a-token estimate) is refused before any
LLM call, and an answered prompt reports the real token count of what the model was sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_support import LEAVE_HIT, EchoLLM, ServerThread, make_config, token

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.config import LimitsConfig
from llmctl.gateway.tokens import LlamaCppCounter
from llmctl.local.spec import default_gguf

HIT = LEAVE_HIT


class CountingHits:
    """The retriever: one readable hit, and how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        self.calls += 1
        return [HIT]

    def ready(self) -> tuple[bool, str]:
        return True, ""


SURROGATE = "{} contains a lone surrogate (an unpaired \\ud800-\\udfff escape)"
DEEP = b'{"question": "q", "messages": ' + b"[" * 8000 + b"]" * 8000 + b"}"  # 16,031 bytes
LONG_INT = b'{"question": "q", "messages": [{"role": "user", "content": "q"}], "top_k": '
LONG_INT += b"9" * 5000 + b"}"

# (case, endpoint, raw body, message)
CASES = [
    ("surrogate", "/v1/ask", rb'{"question": "hi \ud800"}', SURROGATE.format("'question'")),
    (
        "surrogate",
        "/v1/chat/completions",
        rb'{"messages": [{"role": "user", "content": "hi \ud800"}]}',
        SURROGATE.format("message content"),
    ),
    (
        "surrogate-part",
        "/v1/chat/completions",
        rb'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00 hi"}]}]}',
        SURROGATE.format("message content"),
    ),
    ("deep", "/v1/ask", DEEP, "body is nested too deeply"),
    ("deep", "/v1/chat/completions", DEEP, "body is nested too deeply"),
    ("long-int", "/v1/ask", LONG_INT, "body holds a number with too many digits"),
    ("long-int", "/v1/chat/completions", LONG_INT, "body holds a number with too many digits"),
    (
        "text-number",
        "/v1/chat/completions",
        b'{"messages":[{"role":"user","content":[{"type":"text","text":5}]}]}',
        "the 'text' of a text content part must be a string",
    ),
]


def _message(path: str, body: dict[str, Any]) -> str:
    return body["error"] if path == "/v1/ask" else body["error"]["message"]


def _records(state: Path, request_id: str) -> list[dict[str, Any]]:
    return [
        r for r in read_records(state / "audit" / "audit.jsonl") if r["request_id"] == request_id
    ]


@pytest.fixture(scope="module")
def malformed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, CountingHits, EchoLLM]]:
    state = tmp_path_factory.mktemp("input-state")
    hits, llm = CountingHits(), EchoLLM()
    config = make_config(state)  # the default 16 KiB body limit: every body here is under it
    with ServerThread(create_app(config, retriever=hits, llm=llm)) as server:
        yield server.url, state, hits, llm


@pytest.mark.parametrize("case, path, raw, message", CASES, ids=[f"{c[0]}{c[1]}" for c in CASES])
def test_malformed_body_is_a_400_with_one_audit_record(
    malformed: tuple[str, Path, CountingHits, EchoLLM],
    case: str,
    path: str,
    raw: bytes,
    message: str,
) -> None:
    url, state, hits, llm = malformed
    assert len(raw) <= LimitsConfig().max_request_bytes  # refused for its content, not its size
    headers = {
        "Authorization": f"Bearer {token(state, 'alice', ['hr'])}",
        "Content-Type": "application/json",
    }
    before = (hits.calls, llm.calls)
    r = httpx.post(url + path, content=raw, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert _message(path, r.json()) == message
    (record,) = _records(state, r.headers["x-request-id"])
    assert (record["outcome"], record["status"]) == ("bad_request", 400)
    assert (hits.calls, llm.calls) == before  # refused before retrieval and the model


def test_the_same_server_still_answers(malformed: tuple[str, Path, CountingHits, EchoLLM]) -> None:
    """The refusals above left nothing broken behind them (a RecursionError included)."""
    url, state, _, _ = malformed
    headers = {"Authorization": f"Bearer {token(state, 'alice', ['hr'])}"}
    r = httpx.post(url + "/v1/ask", json={"question": "How long is leave?"}, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "answered"


# -- prompts sized in the served model's tokens -------------------------------------------------

EMOJI_QUESTION = "\U0001f600" * 1950  # under max_question_chars (2,000): only tokens refuse it


@pytest.fixture(scope="module")
def gguf_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, CountingHits, EchoLLM]]:
    state = tmp_path_factory.mktemp("tokens-state")
    hits, llm = CountingHits(), EchoLLM()
    limits = LimitsConfig(context_tokens=2048, max_input_tokens=1536, max_output_tokens=64)
    config = make_config(state, limits=limits, tokenizer=str(default_gguf()))
    with ServerThread(create_app(config, retriever=hits, llm=llm)) as server:
        yield server.url, state, hits, llm


@pytest.mark.parametrize("path", ["/v1/ask", "/v1/chat/completions"])
def test_a_question_over_the_token_budget_is_refused_before_the_model(
    gguf_gateway: tuple[str, Path, CountingHits, EchoLLM], path: str
) -> None:
    url, state, _, llm = gguf_gateway
    headers = {"Authorization": f"Bearer {token(state, 'alice', ['hr'])}"}
    body: dict[str, Any] = {"question": EMOJI_QUESTION}
    if path != "/v1/ask":
        body = {"messages": [{"role": "user", "content": EMOJI_QUESTION}]}
    calls = llm.calls
    r = httpx.post(url + path, json=body, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    message = _message(path, r.json())
    assert message.startswith("question is 5850 tokens;") and "limit of 1536 tokens" in message
    (record,) = _records(state, r.headers["x-request-id"])
    assert (record["outcome"], record["status"]) == ("bad_request", 400)
    assert llm.calls == calls


def test_prompt_tokens_are_the_real_count_of_what_the_model_got(
    gguf_gateway: tuple[str, Path, CountingHits, EchoLLM],
) -> None:
    url, state, _, llm = gguf_gateway
    headers = {"Authorization": f"Bearer {token(state, 'alice', ['hr'])}"}
    r = httpx.post(url + "/v1/ask", json={"question": "休暇は何週間？ 🙂"}, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "answered"
    sent = llm.prompts[-1]
    real = LlamaCppCounter(default_gguf()).count(sent)
    assert r.json()["usage"]["prompt_tokens"] == real <= 1536
    (record,) = _records(state, r.json()["request_id"])
    assert record["prompt_tokens"] == real
