"""Property: a chunk the caller may not read never leaves the gateway, by any door.

Random corpora (documents with random ACLs over a pool of groups), random users with random group
memberships (including none, and groups no document uses), random questions, both APIs, streamed
or not. Each document carries a unique marker in its id, title and text. After every request, no
marker or id of a document the caller cannot read may appear in the HTTP response, in the audit
records of that request, or in anything logged by the process while serving it. And the citations
must be exactly the sources the model was given.

The LLM here is ``EchoLLM`` (in-process, streams its prompt back): deliberately, because it makes
the whole prompt visible in the answer, so a chunk that reached the prompt cannot hide behind a
paraphrase. Everything else is real: uvicorn on 127.0.0.1, JWT auth with the dev issuer, the
LanceDB index built by the retrieval package, MiniLM embeddings in-process.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gateway_support import (
    Doc,
    EchoLLM,
    ServerThread,
    build_index,
    in_process_retriever,
    make_config,
    token,
)

from llmctl.gateway.app import create_app
from llmctl.gateway.audit import read_records
from llmctl.gateway.config import LimitsConfig

GROUPS = ("hr", "finance", "staff", "legal", "eng")
TOPICS = (
    (
        "Parental leave",
        "Employees receive {n} weeks of paid parental leave after a birth or an adoption.",
        "How many weeks of parental leave do employees get?",
    ),
    (
        "Expense limits",
        "Expenses above {n} thousand euros need approval from the finance director.",
        "Who approves large expenses?",
    ),
    (
        "Password rules",
        "Passwords have at least {n} characters and multi-factor login is mandatory.",
        "How long must a password be?",
    ),
    (
        "Travel booking",
        "Business travel is booked through the agency at least {n} days ahead.",
        "How early must business travel be booked?",
    ),
    (
        "Incident response",
        "Security incidents are reported to the on-call team within {n} minutes.",
        "How fast must a security incident be reported?",
    ),
)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def embedder():
    from llmctl.retrieval.embedders import InProcessEmbedder

    return InProcessEmbedder(threads=1)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("acl-state")
    llm = EchoLLM()
    config = make_config(
        state,
        limits=LimitsConfig(
            min_score=-1.0,
            default_top_k=8,
            max_top_k=8,
            context_tokens=100_000,
            max_input_tokens=50_000,
            max_output_tokens=16,
            max_source_chars=2000,
        ),
    )
    capture = _Capture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    gw_logger = logging.getLogger("llmctl.gateway")
    saved = gw_logger.level
    gw_logger.setLevel(logging.DEBUG)
    root.addHandler(capture)

    class _Swap:  # the running server's retriever, replaced per example
        current = None

        def search(self, question, groups, top_k):
            return self.current.search(question, groups, top_k)

        def ready(self):
            return True, ""

    swap = _Swap()
    server = ServerThread(create_app(config, retriever=swap, llm=llm))
    with server:
        yield server, state, swap, llm, capture
    root.removeHandler(capture)
    gw_logger.setLevel(saved)


markers = st.text(alphabet="bcdfghjklmnpqrstvwxz", min_size=8, max_size=8)
acls = st.sets(st.sampled_from(GROUPS), min_size=1, max_size=3)
docs_strategy = st.lists(
    st.tuples(markers, acls, st.integers(0, len(TOPICS) - 1), st.integers(2, 99)),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t[0],
)
users_strategy = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob", "carol", "dave"]),
        st.sets(st.sampled_from((*GROUPS, "contractors")), max_size=3),
        st.integers(0, len(TOPICS) - 1),
        st.sampled_from(["ask", "ask-stream", "chat", "chat-stream"]),
    ),
    min_size=1,
    max_size=4,
)


def _request(client: httpx.Client, mode: str, question: str, bearer: str) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {bearer}"}
    stream = mode.endswith("stream")
    if mode.startswith("ask"):
        path, payload = "/v1/ask", {"question": question, "stream": stream}
    else:
        path, payload = (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": question}], "stream": stream},
        )
    r = client.post(path, json=payload, headers=headers)
    return r.status_code, r.text, r.headers.get("x-request-id", "")


def _cited_ids(mode: str, text: str) -> list[str]:
    if not mode.endswith("stream"):
        return [c["doc_id"] for c in json.loads(text)["citations"]]
    for block in reversed(text.split("\n\n")):
        data = next((ln[6:] for ln in block.splitlines() if ln.startswith("data: ")), None)
        if data and data != "[DONE]":
            return [c["doc_id"] for c in json.loads(data)["citations"]]
    raise AssertionError("no final event")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(docs=docs_strategy, users=users_strategy)
def test_unreadable_chunks_never_leave_the_gateway(gateway, embedder, docs, users) -> None:
    server, state, swap, llm, capture = gateway
    corpus = [
        Doc(
            f"acl/{m}",
            f"{TOPICS[t][0]} {m}",
            "Rule",
            f"{TOPICS[t][1].format(n=n)} Reference {m}.",
            tuple(sorted(acl)),
        )
        for m, acl, t, n in docs
    ]
    with tempfile.TemporaryDirectory() as work:
        index_dir, _ = build_index(Path(work), corpus, embedder)
        swap.current = in_process_retriever(index_dir, embedder)
        audit_path = state / "audit" / "audit.jsonl"
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for user, groups, topic, mode in users:
                readable = {d.doc_id for d in corpus if set(d.acl) & groups}
                secret = [d for d in corpus if d.doc_id not in readable]
                before_logs = len(capture.lines)
                before_audit = len(read_records(audit_path)) if audit_path.exists() else 0
                prompts_before = len(llm.prompts)
                status, text, request_id = _request(
                    client, mode, TOPICS[topic][2], token(state, user, sorted(groups))
                )
                assert status == 200, text
                trail = read_records(audit_path)[before_audit:]  # a stream's intent record too
                new_audit = [r for r in trail if r.get("stage") != "intent"]
                assert [r["request_id"] for r in new_audit] == [request_id]
                audit_text = json.dumps(trail)
                logs = "\n".join(capture.lines[before_logs:])
                for d in secret:
                    marker = d.doc_id.split("/")[1]
                    for where, blob in (("response", text), ("audit", audit_text), ("logs", logs)):
                        assert marker not in blob, f"unreadable {d.doc_id} leaked into the {where}"
                    for prompt in llm.prompts[prompts_before:]:
                        assert marker not in prompt
                cited = _cited_ids(mode, text)
                assert set(cited) <= readable
                assert new_audit[0]["cited_doc_ids"] == sorted(set(cited))
                shown = llm.prompts[prompts_before:]
                if readable:
                    # min_score is off and top_k covers the corpus: every readable doc is a source,
                    # and the citations are exactly what the model was shown.
                    assert len(shown) == 1 and sorted(cited) == sorted(readable)
                    assert all(
                        d.doc_id.split("/")[1] in shown[0] for d in corpus if d.doc_id in readable
                    )
                else:
                    assert shown == [] and cited == [] and "No source available" in text
