"""The gateway over real HTTP (uvicorn on 127.0.0.1, port 0) with a real LanceDB index, on the
paths that need no model: 401, 429, 413, 400, no-source, 503 when Triton is down, probes,
metrics, and exactly one audit record per request of every outcome.

Triton here is *absent on purpose*: the LLM URL is a loopback port with nothing listening, which is
exactly "Triton is down" (connection refused). A no-source answer coming back 200 from this setup
also proves the gateway did not call the model for it. Answers from the real model are in
test_gateway_stack.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_gateway_support import (
    CORPUS,
    ServerThread,
    build_index,
    in_process_retriever,
    make_config,
    token,
)

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.config import LimitsConfig, RateLimitConfig
from llmctl.gateway.questionkeys import load_ring, question_keys_path


@pytest.fixture(scope="module")
def embedder():
    from llmctl.retrieval.embedders import InProcessEmbedder

    return InProcessEmbedder(threads=1)


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> tuple[Path, str]:
    return build_index(tmp_path_factory.mktemp("corpus"), CORPUS, embedder)


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _server(state: Path, corpus_index, embedder, **config_changes) -> ServerThread:
    index_dir, _ = corpus_index
    config = make_config(state, index_dir=index_dir, **config_changes)
    return ServerThread(create_app(config, retriever=in_process_retriever(index_dir, embedder)))


def _audit(state: Path) -> list[dict]:
    """Completion records (a stream's intent record is checked by the tests about it)."""
    return [r for r in _trail(state) if r.get("stage") != "intent"]


def _trail(state: Path) -> list[dict]:
    return read_records(state / "audit" / "audit.jsonl")


def _bearer(
    state: Path, user: str = "alice", groups: tuple[str, ...] = ("hr", "staff")
) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(state, user, groups)}"}


def test_refusals_and_audit_one_record_each(state: Path, corpus_index, embedder) -> None:
    """Every outcome reachable without a model, each with exactly one well-formed audit line."""
    server = _server(
        state,
        corpus_index,
        embedder,
        limits=LimitsConfig(
            max_request_bytes=2048, min_score=0.2, context_tokens=1024, max_input_tokens=900
        ),
    )
    expected: dict[str, tuple[str, int]] = {}  # request id -> (outcome, status)
    with server, httpx.Client(base_url=server.url, timeout=30) as client:

        def call(path: str, outcome: str, status: int, **kw) -> httpx.Response:
            r = client.post(path, **kw)
            assert r.status_code == status, r.text
            expected[r.headers["x-request-id"]] = (outcome, status)
            return r

        for path in ("/v1/ask", "/v1/chat/completions"):
            r = call(path, "unauthorized", 401, json={"question": "q"})
            assert r.headers["www-authenticate"].startswith("Bearer")
            call(
                path,
                "unauthorized",
                401,
                json={"question": "q"},
                headers={"Authorization": "Bearer x.y.z"},
            )
        expired = {
            "Authorization": f"Bearer {token(state, 'alice', ['hr'], ttl_s=-120)}"
        }  # past leeway
        call("/v1/ask", "unauthorized", 401, json={"question": "q"}, headers=expired)

        auth = _bearer(state)
        call(
            "/v1/ask",
            "too_large",
            413,
            content=b'{"question": "' + b"a" * 5000 + b'"}',
            headers=auth,
        )
        chunked = iter(
            [b'{"question": "', b"a" * 3000, b'"}']
        )  # no Content-Length: counted while read
        call("/v1/ask", "too_large", 413, content=chunked, headers=auth)
        call("/v1/ask", "bad_request", 400, content=b"{not json", headers=auth)
        call("/v1/ask", "bad_request", 400, json={"question": ""}, headers=auth)
        call("/v1/ask", "bad_request", 400, json={"question": "q", "top_k": 0}, headers=auth)
        call("/v1/chat/completions", "bad_request", 400, json={"messages": []}, headers=auth)

        # No readable source: a caller in no group of the corpus, and an off-topic question.
        nobody = _bearer(state, "mallory", ("contractors",))
        r = call(
            "/v1/ask",
            "no_source",
            200,
            json={"question": "How many weeks of parental leave?"},
            headers=nobody,
        )
        body = r.json()
        assert body["citations"] == [] and "No source available" in body["answer"]
        assert body["usage"]["completion_tokens"] == 0
        r = call(
            "/v1/ask",
            "no_source",
            200,
            json={"question": "Who won the 1954 football world cup final?"},
            headers=auth,
        )
        assert r.json()["citations"] == []

        # Readable sources but Triton is down: a fast 503, streamed or not, on both APIs.
        q = {"question": "How many weeks of paid parental leave do employees get?"}
        for path, payload in (
            ("/v1/ask", q),
            ("/v1/ask", {**q, "stream": True}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": q["question"]}]}),
            (
                "/v1/chat/completions",
                {"messages": [{"role": "user", "content": q["question"]}], "stream": True},
            ),
        ):
            started = time.perf_counter()
            r = call(path, "unavailable", 503, json=payload, headers=auth)
            assert (
                time.perf_counter() - started < 10
            )  # refused connection, not a hang until a timeout
            assert r.headers.get("retry-after")

        probe = client.get("/readyz")
        assert probe.status_code == 503 and "triton" in probe.json()["llm"]
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text

    records = _audit(state)
    ids = [r["request_id"] for r in records]
    assert sorted(ids) == sorted(expected), "exactly one audit record per request"
    for rec in records:
        outcome, status = expected[rec["request_id"]]
        assert (rec["outcome"], rec["status"]) == (outcome, status)
        assert rec["time"].endswith("Z") and rec["blueprint_hash"] == "1" * 64
        assert "question" not in rec  # the blueprint did not allow the text
        if rec["outcome"] == "unauthorized":
            assert rec.get("subject") is None
        else:
            assert rec["subject"] in ("alice", "mallory")
    raw = (state / "audit" / "audit.jsonl").read_text()
    assert "Bearer" not in raw and "eyJ" not in raw  # no token or header ever lands in the audit

    counts = Counter(outcome for outcome, _ in expected.values())
    for outcome, n in counts.items():
        endpoint_total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("llmctl_gateway_requests_total{") and f'outcome="{outcome}"' in line
        )
        assert endpoint_total == n
    assert "alice" not in metrics and "parental" not in metrics


def test_rate_limit_per_subject(state: Path, corpus_index, embedder) -> None:
    server = _server(
        state, corpus_index, embedder, rate=RateLimitConfig(requests_per_minute=1, burst=2)
    )
    off_topic = {"question": "Who won the 1954 football world cup final?"}
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        alice = _bearer(state, "alice")
        assert [
            client.post("/v1/ask", json=off_topic, headers=alice).status_code for _ in range(2)
        ] == [200, 200]
        r = client.post("/v1/ask", json=off_topic, headers=alice)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert (
            client.post("/v1/ask", json=off_topic, headers=_bearer(state, "bob")).status_code == 200
        )
    outcomes = Counter(r["outcome"] for r in _audit(state))
    assert outcomes == {"no_source": 3, "rate_limited": 1}


def test_question_text_only_when_the_blueprint_allows_it(
    state: Path, corpus_index, embedder
) -> None:
    question = "Who won the 1954 football world cup final?"
    with _server(state, corpus_index, embedder, include_question_text=True) as server:
        httpx.post(
            f"{server.url}/v1/ask", json={"question": question}, headers=_bearer(state), timeout=30
        )
    (rec,) = _audit(state)
    assert rec["question"] == question
    ring = load_ring(question_keys_path(state))
    assert rec["question_key_id"] == ring.active_id
    assert rec["question_hmac"] == ring.active.digest(question)
    assert rec["question_hmac"] != hashlib.sha256(question.encode()).hexdigest()


def test_streamed_no_source_has_final_event_after_audit(
    state: Path, corpus_index, embedder
) -> None:
    with _server(state, corpus_index, embedder) as server:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/ask",
            json={"question": "How many weeks of parental leave?", "stream": True},
            headers=_bearer(state, "mallory", ("contractors",)),
            timeout=30,
        ) as r:
            assert r.status_code == 200
            events = []
            for block in r.read().decode().split("\n\n"):
                if not block.strip():
                    continue
                lines = dict(line.split(": ", 1) for line in block.splitlines())
                events.append((lines.get("event"), json.loads(lines["data"])))
                if lines.get("event") == "final":
                    assert len(_audit(state)) == 1  # durable before the caller sees the end
    assert [e for e, _ in events] == ["delta", "final"]
    assert events[-1][1]["outcome"] == "no_source" and events[-1][1]["citations"] == []
