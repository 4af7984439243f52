"""Simulated employees asking the gateway questions, streaming (what ``llmctl verify`` drives).

Each user takes one identity (subject, groups, a token the gateway accepts) and asks questions of
the evaluation set its groups allow, with ``stream: true``. Locust has no notion of tokens, so
every answer fires its own request events:

- ``ASK /v1/ask``: end-to-end latency (the request fails on a non-200, an SSE ``error`` event or
  a stream that ends without its ``final`` event);
- ``TTFT``: time to the first ``delta`` event;
- ``ITL``: mean gap between later deltas (inter-token latency);
- ``TPS``: output tokens per second after the first token (the value, not milliseconds, sits in
  Locust's response-time field).

``llmctl verify`` passes identities and questions on the environment (``environment.llmctl_spec``).
Run by hand, ``locust -f loadtests/gateway_user.py --host http://127.0.0.1:PORT`` reads
``LLMCTL_BLUEPRINT`` (and ``LLMCTL_TARGET``) and mints tokens from the local stack's dev issuer.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from typing import Any

from locust import HttpUser, between, task

from llmctl.gateway.client import ask_payload, parse_sse

_SEQ = itertools.count()


def _spec_from_env(environment: Any) -> Any:
    """A LoadSpec built from the blueprint named in LLMCTL_BLUEPRINT (for plain ``locust -f``)."""
    from llmctl.blueprint import load_blueprint
    from llmctl.gates.load import LoadSpec
    from llmctl.gates.verify import identities_and_questions

    bp = load_blueprint(os.environ["LLMCTL_BLUEPRINT"])
    target = os.environ.get("LLMCTL_TARGET", "local")
    identities, questions = identities_and_questions(bp, target, users=16)
    spec = LoadSpec(host=environment.host or "", identities=identities, questions=questions)
    environment.llmctl_spec = spec
    environment.llmctl_responses = []
    return spec


class GatewayUser(HttpUser):
    """An employee with a token, asking questions one after another with some think time."""

    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        env = self.environment
        spec = getattr(env, "llmctl_spec", None) or _spec_from_env(env)
        self.spec = spec
        self.sink = env.llmctl_responses
        n = next(_SEQ)
        self.identity = spec.identities[n % len(spec.identities)]
        mine = set(self.identity.groups)
        allowed = [q for q in spec.questions if set(q.get("asker_groups") or []) <= mine]
        self.questions = allowed or list(spec.questions)
        self.rng = random.Random(n)
        lo, hi = spec.wait_min_s, spec.wait_max_s
        self.wait_time = lambda: self.rng.uniform(lo, hi)  # type: ignore[method-assign]

    def fire(self, kind: str, name: str, value: float, exc: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=value,
            response_length=0,
            exception=exc,
            context={"user": self.identity.user},
        )

    @task
    def ask(self) -> None:
        q = self.rng.choice(self.questions)
        headers = {"Authorization": f"Bearer {self.identity.token}"}
        body = ask_payload(q["question"], stream=True)
        started = time.perf_counter()
        record: dict[str, Any] = {
            "source": "load",
            "user": self.identity.user,
            "groups": list(self.identity.groups),
            "question_id": q.get("id"),
            "stream": True,
            "status": None,
        }
        deltas: list[float] = []
        final: dict[str, Any] | None = None
        error: Exception | None = None
        try:
            with self.client.post(
                "/v1/ask",
                json=body,
                headers=headers,
                stream=True,
                catch_response=True,
                name="ask (headers)",
                timeout=self.spec.request_timeout_s,
            ) as resp:
                record["status"] = resp.status_code
                record["request_id"] = resp.headers.get("X-Request-ID")
                if resp.status_code != 200:
                    error = RuntimeError(f"HTTP {resp.status_code}")
                    resp.failure(error)
                else:
                    for sse in parse_sse(resp.iter_lines()):
                        if sse.event == "delta":
                            deltas.append(time.perf_counter())
                        elif sse.event == "final":
                            final = sse.data
                        elif sse.event == "error":
                            error = RuntimeError(f"stream error: {json.dumps(sse.data)[:120]}")
                    if error is None and final is None:
                        error = RuntimeError("stream ended without a final event")
                    if error is not None:
                        resp.failure(error)
                    else:
                        resp.success()
        except Exception as exc:  # connection errors; GreenletExit (a stop) is not an Exception
            error = exc
        total_ms = (time.perf_counter() - started) * 1e3
        self.fire("ASK", "/v1/ask", total_ms, error)
        if final is not None:
            record.update(
                outcome=final.get("outcome"),
                citations=[c.get("doc_id") for c in final.get("citations") or []],
                request_id=final.get("request_id") or record.get("request_id"),
            )
        record["error"] = str(error) if error else None
        record["latency_ms"] = round(total_ms, 3)
        self.sink.append(record)
        if error is not None or not deltas:
            return
        self.fire("TTFT", "/v1/ask", (deltas[0] - started) * 1e3)
        if len(deltas) > 1:
            span = deltas[-1] - deltas[0]
            self.fire("ITL", "/v1/ask", span / (len(deltas) - 1) * 1e3)
            if span > 0:
                self.fire("TPS", "/v1/ask", (len(deltas) - 1) / span)
