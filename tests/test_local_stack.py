"""End-to-end tests against a real Triton serving both models (the session's ``local_stack``)."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
from stack_fixtures import full_spec, make_target

from llmctl import triton_client
from llmctl.local.prompt import format_chat
from llmctl.local.supervisor import pid_alive
from llmctl.targets.local import TRITON

pytestmark = pytest.mark.stack


def _grpc(target) -> str:
    return target.endpoints()["triton_grpc"]


def test_up_ran_the_smoke_test(local_stack):
    _, result = local_stack
    assert result.changed
    assert result.smoke is not None and result.smoke.deltas > 0
    assert result.smoke.embedding_shape == (3, 384)
    assert set(result.endpoints) == {"triton_http", "triton_grpc", "triton_metrics"}
    assert all("127.0.0.1" in url for url in result.endpoints.values())


def test_streamed_generation_returns_tokens(local_stack):
    target, _ = local_stack
    prompt = format_chat([{"role": "user", "content": "What is the capital of France?"}])
    deltas = list(triton_client.stream_generate(_grpc(target), prompt, max_tokens=24))
    assert len(deltas) > 1
    assert all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas).strip()


def test_greedy_generation_is_deterministic_and_honours_max_tokens(local_stack):
    target, _ = local_stack
    prompt = format_chat([{"role": "user", "content": "Count from one to twenty."}])
    reasons: list[str | None] = []
    first = list(
        triton_client.stream_generate(_grpc(target), prompt, max_tokens=6, on_finish=reasons.append)
    )
    second = list(triton_client.stream_generate(_grpc(target), prompt, max_tokens=6))
    assert first == second
    assert 0 < len(first) <= 6
    # the LLM-API model's finish_reason: counting to twenty does not fit in six tokens
    assert reasons == ["length"]


def test_stream_sends_the_text_so_far_like_the_llmapi_model(local_stack):
    """Over the generate extension every event carries the whole text so far (the LLM API's
    cumulative ``CompletionOutput.text``), ending with the finish reason."""
    target, _ = local_stack
    prompt = format_chat([{"role": "user", "content": "Name three colours."}])
    payload = {"text_input": prompt, "streaming": True, "return_finish_reason": True}
    payload["sampling_param_max_tokens"] = 8
    req = urllib.request.Request(
        target.endpoints()["triton_http"] + "/v2/models/tensorrt_llm/generate_stream",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        events = [
            json.loads(line[5:])
            for line in resp.read().decode().splitlines()
            if line.startswith("data:")
        ]
    texts = [e["text_output"] for e in events]
    assert len(texts) > 2
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False)), texts
    assert [e["finish_reason"] for e in events[:-1]] == ["None"] * (len(events) - 1)
    assert events[-1]["finish_reason"] in ("length", "stop")


def test_http_generate_endpoint_without_streaming(local_stack):
    """The same model answers Triton's HTTP generate extension (one response, stream false)."""
    target, _ = local_stack
    body = json.dumps(
        {"text_input": "The sky is", "sampling_param_max_tokens": 5, "return_finish_reason": True}
    ).encode()
    req = urllib.request.Request(
        target.endpoints()["triton_http"] + "/v2/models/tensorrt_llm/generate",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        answer = json.loads(resp.read())
    assert isinstance(answer["text_output"], str) and answer["text_output"]
    assert answer["finish_reason"] == "length"  # five tokens cut the sentence


def test_embedding_batch_has_right_shape_and_unit_norm(local_stack):
    target, _ = local_stack
    texts = [f"document number {i} about vacation policy" for i in range(10)] + [
        "The cat sat on the mat.",
        "A feline rested on the rug.",
        "Quarterly revenue grew by ten percent.",
    ]
    vectors = triton_client.embed(_grpc(target), texts)
    assert vectors.shape == (len(texts), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cat, feline, revenue = vectors[-3], vectors[-2], vectors[-1]
    assert cat @ feline > cat @ revenue


def test_second_apply_changes_nothing(local_stack):
    target, _ = local_stack
    pid = target.supervisor.record(TRITON).pid
    plan = target.plan()
    assert not plan.changed, plan.actions
    result = target.apply()
    assert not result.changed
    assert target.supervisor.record(TRITON).pid == pid


def test_status_reports_models_and_keys(local_stack):
    target, _ = local_stack
    st = target.status()
    assert st.state == "running", st.problems
    assert [c.name for c in st.components] == [TRITON]
    assert st.components[0].uptime_s is not None
    models = {m.name: m for m in st.models}
    assert set(models) == {"tensorrt_llm", "embedder"}
    for m in models.values():
        assert m.state == "READY"
        assert m.key == m.expected_key
    assert st.to_dict()["components"][0]["ports"]["http"] > 0


def test_metrics_are_served(local_stack):
    target, _ = local_stack
    with urllib.request.urlopen(target.endpoints()["triton_metrics"], timeout=10) as resp:
        text = resp.read().decode()
    assert "nv_inference_request_success" in text


def test_reload_of_a_changed_model_only(local_stack, stack_dirs):
    target, _ = local_stack
    pid = target.supervisor.record(TRITON).pid
    before = {m.name: m.key for m in target.status().models}
    base = full_spec()
    changed = base.with_changes(
        embedder=replace(base.embedder, max_queue_delay_us=base.embedder.max_queue_delay_us + 1)
    )
    other = make_target(changed, stack_dirs)
    try:
        plan = other.plan()
        assert {(a.verb, a.subject) for a in plan.actions} <= {
            ("build", "embedder"),
            ("reload", "embedder"),
        }
        assert ("reload", "embedder") in {(a.verb, a.subject) for a in plan.actions}
        result = other.apply(plan)
        assert result.loaded == ("embedder",)
        after = {m.name: m.key for m in other.status().models}
        assert after["tensorrt_llm"] == before["tensorrt_llm"]
        assert after["embedder"] != before["embedder"]
        assert other.supervisor.record(TRITON).pid == pid
        assert triton_client.embed(_grpc(other), ["still works"]).shape == (1, 384)
    finally:
        back = target.apply()  # the original spec: reload the embedder back
        assert not back.changed or back.loaded == ("embedder",)
    assert not target.plan().changed


def test_both_embedder_runtimes_serve_the_same_vectors(local_stack, stack_dirs):
    """The local build serves ONNX Runtime; the Kubernetes repository runs sentence-transformers
    from the same model.py. Reloading the embedder with the other runtime must not move a vector,
    or an index built by one would be searched with questions embedded by the other."""
    target, _ = local_stack
    texts = ["How long must a password be?", "  padded  ", "x " * 400]
    onnx = triton_client.embed(_grpc(target), texts)
    base = full_spec()
    torch_spec = base.with_changes(embedder=replace(base.embedder, runtime="sentence-transformers"))
    other = make_target(torch_spec, stack_dirs)
    try:
        assert other.apply().loaded == ("embedder",)
        served = triton_client.embed(_grpc(other), texts)
    finally:
        back = target.apply()
        assert back.loaded == ("embedder",)
    assert float(np.min(np.sum(onnx * served, axis=1))) > 0.9999


def test_status_detects_a_hung_triton(local_stack):
    target, _ = local_stack
    pid = target.supervisor.record(TRITON).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        st = target.status()
        assert st.state == "degraded"
        assert st.components[0].state == "hung"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert pid_alive(pid)
    assert target.status().state == "running"
