"""Load straight on Triton's LLM model (``tensorrt_llm``, TensorRT-LLM's LLM-API model or the local
stand-in), bypassing gateway and retrieval.

Same request events as ``gateway_user.py`` (ASK, TTFT, ITL, TPS), through Triton's HTTP generate
extension (``POST /v2/models/tensorrt_llm/generate_stream``, server-sent events; every event carries
the text so far, so only events that add text count as tokens). Comparing the two
profiles separates model capacity from what the gateway and retrieval add.
The prompt is a question of the evaluation set in the served model's ChatML frame, without
retrieved sources, so it is shorter than the gateway's: the difference is retrieval's share.
"""

from __future__ import annotations

import itertools
import random
import time

from locust import HttpUser, between, task

from llmctl.gateway.client import parse_sse
from llmctl.triton_protocol import (
    LLM_MODEL,
    Sampling,
    TextStream,
    generate_payload,
    generate_stream_path,
)

_SEQ = itertools.count()
FRAME = "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


class TritonUser(HttpUser):
    """A client of the model server itself (no auth, no retrieval, no audit)."""

    wait_time = between(1.0, 3.0)
    model = LLM_MODEL

    def on_start(self) -> None:
        spec = getattr(self.environment, "llmctl_spec", None)
        self.sink = getattr(self.environment, "llmctl_responses", [])
        self.questions = [q["question"] for q in (spec.questions if spec else [])] or [
            "How many days of paid annual leave does a full-time employee get?"
        ]
        self.max_tokens = spec.max_tokens if spec else 64
        self.timeout = spec.request_timeout_s if spec else 120.0
        n = next(_SEQ)
        self.rng = random.Random(n)
        if spec is not None:
            lo, hi = spec.wait_min_s, spec.wait_max_s
            self.wait_time = lambda: self.rng.uniform(lo, hi)  # type: ignore[method-assign]

    def fire(self, kind: str, value: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=generate_stream_path(self.model),
            response_time=value,
            response_length=0,
            exception=exc,
            context={},
        )

    @task
    def generate(self) -> None:
        payload = generate_payload(
            FRAME.format(q=self.rng.choice(self.questions)),
            Sampling(max_tokens=self.max_tokens, stop=("<|im_end|>",)),
        )
        text = TextStream()
        started = time.perf_counter()
        deltas: list[float] = []
        error: Exception | None = None
        try:
            with self.client.post(
                generate_stream_path(self.model),
                json=payload,
                stream=True,
                catch_response=True,
                name="generate_stream (headers)",
                timeout=self.timeout,
            ) as resp:
                if resp.status_code != 200:
                    error = RuntimeError(f"HTTP {resp.status_code}")
                else:
                    for sse in parse_sse(resp.iter_lines()):
                        doc = sse.data if isinstance(sse.data, dict) else {}
                        if "error" in doc:
                            error = RuntimeError(str(doc["error"])[:120])
                            break
                        out = doc.get("text_output") or ""
                        out = "".join(map(str, out)) if isinstance(out, list) else str(out)
                        if text.feed(out):
                            deltas.append(time.perf_counter())
                    if error is None and not deltas:
                        error = RuntimeError("no tokens streamed")
                if error is not None:
                    resp.failure(error)
                else:
                    resp.success()
        except Exception as exc:
            error = exc
        self.fire("ASK", (time.perf_counter() - started) * 1e3, error)
        if error is not None:
            return
        self.fire("TTFT", (deltas[0] - started) * 1e3)
        if len(deltas) > 1:
            span = deltas[-1] - deltas[0]
            self.fire("ITL", span / (len(deltas) - 1) * 1e3)
            if span > 0:
                self.fire("TPS", (len(deltas) - 1) / span)
