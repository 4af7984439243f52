"""Slow clients against the real gateway app under the production uvicorn server
(``llmctl.gateway.server.build_server`` via ``ServerThread``) on 127.0.0.1, over raw sockets.

Each timeout is small here (0.5-1 s) and every "is closed" check waits up to 20 times the
configured timeout: these are liveness properties (the server does close the connection), not
speed assertions. The LLM is ``EchoLLM`` and the retriever a fixed list of hits: nothing here
needs Triton or an index.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_gateway_support import LEAVE_HIT, EchoLLM, ServerThread, make_config, token

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.config import LimitsConfig

KEEP_ALIVE_S = 0.5
HEADER_S = 1.0
BODY_S = 0.5
BOUND = 20  # x the configured timeout: how long a test waits for the server to close

HIT = LEAVE_HIT


class OneHit:
    """The retriever: one hit, with the ACL prefilter a real index applies."""

    def search(self, question: str, groups: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        return [HIT] if set(HIT["acl"]) & set(groups) else []

    def ready(self) -> tuple[bool, str]:
        return True, ""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Path]]:
    state = tmp_path_factory.mktemp("timeouts-state")
    limits = LimitsConfig(
        min_score=0.2,
        context_tokens=4096,
        max_input_tokens=3000,
        max_output_tokens=16,
        keep_alive_timeout_s=KEEP_ALIVE_S,
        header_timeout_s=HEADER_S,
        body_timeout_s=BODY_S,
    )
    config = make_config(state, limits=limits)
    with ServerThread(create_app(config, retriever=OneHit(), llm=EchoLLM())) as server:
        yield server, state


class Conn:
    """A raw client connection with a receive buffer (one recv may carry several responses).

    Every recv waits at most ``wait_s``: one that outlives it raises, i.e. the server held the
    connection open.
    """

    def __init__(self, server: ServerThread, wait_s: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.sock.settimeout(wait_s)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return chunk

    def until_closed(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        while self._more():
            pass
        data, self.buf = self.buf, b""
        return data

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """One response with a Content-Length body; the connection stays open."""
        while b"\r\n\r\n" not in self.buf:
            assert self._more(), f"connection closed mid-response: {self.buf!r}"
        status, headers, _ = _parse(self.buf)
        length = int(headers["content-length"])
        while len(self.buf.partition(b"\r\n\r\n")[2]) < length:
            assert self._more(), "connection closed mid-body"
        rest = self.buf.partition(b"\r\n\r\n")[2]
        self.buf = rest[length:]
        return status, headers, rest[:length]


def _parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def test_silent_connection_is_closed(gateway: tuple[ServerThread, Path]) -> None:
    server, _ = gateway
    with Conn(server, BOUND * HEADER_S) as conn:
        t0 = time.monotonic()
        data = conn.until_closed()
        took = time.monotonic() - t0
    assert data == b""  # nothing was asked, so nothing is answered: a plain close
    assert took >= HEADER_S * 0.8, took  # the header deadline closed it, not something else


def test_half_sent_headers_get_408_and_close(gateway: tuple[ServerThread, Path]) -> None:
    server, _ = gateway
    with Conn(server, BOUND * HEADER_S) as conn:
        conn.send(b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        raw = conn.until_closed()
    status, headers, body = _parse(raw)
    assert status == 408 and headers["connection"] == "close", raw
    assert body == b"request headers not received in time\n"


def test_headers_trickled_within_the_deadline_are_served(
    gateway: tuple[ServerThread, Path],
) -> None:
    server, _ = gateway
    with Conn(server, BOUND * HEADER_S) as conn:
        for part in (b"GET /healthz HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            conn.send(part)
            time.sleep(HEADER_S / 5)
        status, _, body = conn.response()
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_idle_keep_alive_connection_is_closed(gateway: tuple[ServerThread, Path]) -> None:
    server, _ = gateway
    with Conn(server, BOUND * KEEP_ALIVE_S) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = conn.response()
        assert status == 200 and headers.get("connection") != "close"
        data = conn.until_closed()
    assert data == b""


def test_keep_alive_connection_stalled_mid_headers_is_closed(
    gateway: tuple[ServerThread, Path],
) -> None:
    """One byte after a response cancels uvicorn's keep-alive timer; the header deadline, which
    runs from the end of the previous response, still closes the connection."""
    server, _ = gateway
    with Conn(server, BOUND * HEADER_S) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert conn.response()[0] == 200
        conn.send(b"G")
        raw = conn.until_closed()
    assert _parse(raw)[0] == 408, raw


def test_pipelined_requests_are_both_served(gateway: tuple[ServerThread, Path]) -> None:
    server, _ = gateway
    with Conn(server, BOUND * HEADER_S) as conn:
        conn.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2)
        assert conn.response()[0] == 200
        assert conn.response()[0] == 200


def test_incomplete_body_gets_408_and_one_audit_record(
    gateway: tuple[ServerThread, Path],
) -> None:
    server, state = gateway
    bearer = token(state, "alice", ["hr"])
    head = (
        "POST /v1/ask HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {bearer}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 500\r\n"
        "\r\n"
    )
    with Conn(server, BOUND * BODY_S) as conn:
        conn.send(head.encode("ascii") + b'{"questio')  # 10 of the 500 declared bytes
        raw = conn.until_closed()  # Connection: close, so the server hangs up after it
    status, headers, body = _parse(raw)
    assert status == 408 and headers["connection"] == "close", raw
    answer = json.loads(body)
    assert answer["outcome"] == "request_timeout"
    assert answer["error"] == f"request body not received within {BODY_S:g} s"
    records = read_records(state / "audit" / "audit.jsonl")
    mine = [r for r in records if r["request_id"] == answer["request_id"]]
    assert len(mine) == 1 and mine[0]["outcome"] == "request_timeout", mine
    assert mine[0]["status"] == 408
    assert [r["outcome"] for r in records].count("request_timeout") == 1
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'llmctl_gateway_requests_total{endpoint="ask",outcome="request_timeout"} 1.0' in metrics


def test_normal_request_still_works(gateway: tuple[ServerThread, Path]) -> None:
    server, state = gateway
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.post(
            "/v1/ask",
            json={"question": "How long is parental leave?"},
            headers={"Authorization": f"Bearer {token(state, 'alice', ['hr'])}"},
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["outcome"] == "answered"
        assert [c["doc_id"] for c in answer["citations"]] == ["hr/leave"]
        # and again over the same keep-alive connection, within its idle timeout
        assert client.get("/healthz").status_code == 200
    records = read_records(state / "audit" / "audit.jsonl")
    mine = [rec["outcome"] for rec in records if rec["request_id"] == answer["request_id"]]
    assert mine == ["answered"]
