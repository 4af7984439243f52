"""The gateway against the real local stack: Triton on CPU serving ``tensorrt_llm`` (SmolLM2 through
llama.cpp) and ``embedder`` (MiniLM), a LanceDB index built through that embedder, the gateway's
default retriever and LLM client (nothing injected), uvicorn on 127.0.0.1 port 0.

Also the crash test: a gateway process SIGKILLed in the middle of a load leaves an audit file
that parses line by line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_gateway_support import CORPUS, ServerThread, build_index, make_config, token

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.config import LimitsConfig, write_config

pytestmark = pytest.mark.stack

QUESTION = "How many weeks of paid parental leave do employees get?"
LIMITS = LimitsConfig(
    context_tokens=1024, max_input_tokens=700, max_output_tokens=24, min_score=0.2
)


@pytest.fixture(scope="module")
def stack_setup(local_stack, tmp_path_factory: pytest.TempPathFactory):
    from llmctl.retrieval.embedders import TritonEmbedder

    target, _ = local_stack
    endpoints = target.endpoints()
    work = tmp_path_factory.mktemp("gateway-stack")
    embedder = TritonEmbedder(endpoints["triton_grpc"])
    try:
        index_dir, index_hash = build_index(work, CORPUS, embedder)
    finally:
        embedder.close()
    state = work / "state"
    config = make_config(
        state,
        triton_url=endpoints["triton_http"],
        triton_grpc_url=endpoints["triton_grpc"],
        index_dir=index_dir,
        limits=LIMITS,
    )
    return config, state, index_hash


@pytest.fixture(scope="module")
def gateway(stack_setup):
    config, state, index_hash = stack_setup
    with ServerThread(create_app(config)) as server:
        yield server, state, index_hash


def _auth(state: Path, user: str = "alice", groups=("hr", "staff")) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(state, user, groups)}"}


def _sse(text: str) -> list[tuple[str | None, str]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields.get("event"), fields["data"]))
    return events


def test_ready_and_answer_with_citations(gateway) -> None:
    server, state, index_hash = gateway
    with httpx.Client(base_url=server.url, timeout=120) as client:
        assert client.get("/readyz").status_code == 200
        r = client.post("/v1/ask", json={"question": QUESTION}, headers=_auth(state))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "answered" and body["answer"].strip()
    assert body["citations"][0]["doc_id"] == "hr/parental-leave"
    assert set(body["citations"][0]) == {"doc_id", "title", "path", "heading", "chunk_id", "score"}
    assert {c["doc_id"] for c in body["citations"]} <= {"hr/parental-leave", "it/passwords"}
    assert body["index_hash"] == index_hash and body["engine_hash"] == "2" * 64
    assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 0
    assert body["timings"]["llm_ms"] > 0 and body["timings"]["ttft_ms"] > 0
    record = next(
        r
        for r in read_records(state / "audit" / "audit.jsonl")
        if r["request_id"] == body["request_id"]
    )
    assert record["outcome"] == "answered" and "hr/parental-leave" in record["cited_doc_ids"]
    assert all(len(c["chunk_hash"]) >= 16 for c in record["cited_chunks"])
    assert record["completion_tokens"] == body["usage"]["completion_tokens"]


def test_streamed_ask_and_chat(gateway) -> None:
    server, state, _ = gateway
    with httpx.Client(base_url=server.url, timeout=120) as client:
        r = client.post(
            "/v1/ask", json={"question": QUESTION, "stream": True}, headers=_auth(state)
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.text)
        kinds = [k for k, _ in events]
        assert kinds[-1] == "final" and set(kinds[:-1]) == {"delta"} and len(kinds) >= 2
        final = json.loads(events[-1][1])
        streamed = "".join(json.loads(d)["delta"] for k, d in events[:-1])
        assert streamed.strip() == final["answer"]
        assert final["citations"][0]["doc_id"] == "hr/parental-leave"

        chat = {
            "messages": [
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": QUESTION},
            ]
        }
        r = client.post("/v1/chat/completions", json=chat, headers=_auth(state))
        assert r.status_code == 200
        body = r.json()
        assert (
            body["object"] == "chat.completion" and body["choices"][0]["message"]["content"].strip()
        )
        assert body["citations"][0]["doc_id"] == "hr/parental-leave"

        r = client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=_auth(state))
        events = _sse(r.text)
        assert events[-1] == (None, "[DONE]")
        last = json.loads(events[-2][1])
        assert last["choices"][0]["finish_reason"] == "stop" and last["citations"]
        assert json.loads(events[0][1])["choices"][0]["delta"]["role"] == "assistant"


def test_sigkill_mid_load_leaves_parseable_audit(stack_setup, tmp_path: Path) -> None:
    config, _, _ = stack_setup
    state = tmp_path / "crash"
    from test_gateway_support import dev_issuer

    dev = dev_issuer(state)
    config = config.with_changes(
        audit=config.audit.__class__(path=str(state / "audit.jsonl")),
        auth=config.auth.__class__(
            issuer=dev.issuer, audience=dev.audience, jwks_path=str(dev.jwks_path)
        ),
    )
    cfg_path = write_config(config, state / "gateway.json")
    ready = state / "ready.json"
    from llmctl.gateway.component import gateway_argv

    proc = subprocess.Popen(
        gateway_argv(cfg_path, ready_file=ready),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
        good = _auth(state)
        stop = threading.Event()

        def load(i: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    try:
                        if i % 3 == 0:
                            client.post("/v1/ask", json={"question": "q"})  # 401, audited
                        elif i % 3 == 1:
                            client.post(
                                "/v1/ask",
                                json={"question": "Who won the 1954 world cup?"},
                                headers=good,
                            )
                        else:
                            client.post(
                                "/v1/ask", json={"question": QUESTION, "stream": True}, headers=good
                            )
                    except httpx.HTTPError:
                        return

        threads = [threading.Thread(target=load, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        audit = state / "audit.jsonl"

        def outcomes_so_far() -> list[str]:
            if not audit.exists():
                return []
            lines = audit.read_bytes().split(b"\n")[:-1]  # complete records only
            return [json.loads(line)["outcome"] for line in lines]

        # 401s are cheap and arrive first: kill only once slow, retrieval-backed requests are
        # in the file too, so the kill lands while those are in flight.
        while True:
            seen = outcomes_so_far()
            if len(seen) >= 30 and "no_source" in seen:
                break
            assert time.monotonic() < deadline + 180, f"load produced only {len(seen)} records"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    data = (state / "audit.jsonl").read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode("ascii").splitlines()]
    assert len(records) >= 30
    assert len({r["request_id"] for r in records}) == len(records)
    assert {r["outcome"] for r in records} >= {"unauthorized", "no_source"}
