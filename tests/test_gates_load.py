"""The load profile end to end through Locust (child process, request events, evidence), against
the real gateway app on a real uvicorn server. The LLM is the gateway tests' in-process stand-in
and the embedder a hashing one, so this runs in seconds without Triton; the same profile against
the real stack is in test_gates_stack.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# find_spec, not importorskip: importing locust here would gevent-patch the test process itself.
if importlib.util.find_spec("locust") is None:
    pytest.skip(reason="locust is not installed", allow_module_level=True)

from test_gateway_support import (
    CORPUS,
    EchoLLM,
    ServerThread,
    build_index,
    in_process_retriever,
    make_config,
    token,
)  # noqa: E402

from llmctl.gates import load  # noqa: E402
from llmctl.gateway.app import create_app  # noqa: E402
from llmctl.gateway.audit import read_records  # noqa: E402
from llmctl.retrieval.embedders import HashingEmbedder  # noqa: E402


def test_gateway_profile_records_token_events(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    index_dir, _ = build_index(tmp_path, CORPUS, embedder)
    state = tmp_path / "state"
    # report: the answer streams token by token as generated (with enforce it is checked first
    # and sent whole, so there are no per-token events to record)
    config = make_config(state, index_dir=index_dir, grounding="report")
    app = create_app(config, retriever=in_process_retriever(index_dir, embedder), llm=EchoLLM())
    questions = [
        {
            "id": "q1",
            "question": "How many weeks of paid parental leave do employees get?",
            "asker_groups": ["staff"],
        }
    ]
    with ServerThread(app) as server:
        identities = [
            load.Identity(f"u{i}", ["staff", "hr"], token(state, f"u{i}", ["staff", "hr"]))
            for i in range(2)
        ]
        spec = load.LoadSpec(
            host=server.url,
            users=2,
            spawn_rate=2,
            duration_s=4,
            identities=identities,
            questions=questions,
            wait_min_s=0.1,
            wait_max_s=0.3,
            progress_interval_s=1,
        )
        events: list[dict] = []
        result = load.run_profile(spec, on_progress=events.append, workdir=tmp_path / "run")
    f = result["figures"]
    assert f["requests"] > 0 and f["failures"] == 0, result["errors"]
    assert f["p95_ttft_ms"] is not None and f["p95_latency_ms"] >= f["p95_ttft_ms"]
    assert f["mean_output_tps"] is not None and f["throughput_rps"] > 0
    assert any(e.get("event") == "progress" for e in events)
    kinds = {s["kind"] for s in result["samples"]}
    assert {"ASK", "TTFT", "ITL", "TPS"} <= kinds
    answered = [r for r in result["responses"] if r.get("outcome") == "answered"]
    assert answered and all(r["citations"] and r["request_id"] for r in answered)
    audited = {r["request_id"] for r in read_records(state / "audit" / "audit.jsonl")}
    assert {r["request_id"] for r in answered} <= audited
