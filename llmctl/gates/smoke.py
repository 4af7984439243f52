"""The smoke gate: every component answers its health check and one question gets a cited answer.

It runs before the load gate because a load test against a half-started stack measures nothing
but connection errors; when it fails, the later gates that need the stack do not run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from llmctl.gates.results import Check, GateResult
from llmctl.triton_protocol import EMBED_MODEL, LLM_MODEL


def _gateway_health(gateway_url: str) -> list[Check]:
    from llmctl.errors import LlmctlError
    from llmctl.gateway.client import GatewayClient

    checks = []
    with GatewayClient(gateway_url, timeout=5.0) as client:
        for name, call in (("healthz", client.healthz), ("readyz", client.readyz)):
            try:
                r = call()
                status, body = r.status, json.dumps(r.body)[:200]
            except LlmctlError as exc:
                status, body = None, str(exc)
            ok = status == 200
            if name == "healthz":
                message = f"gateway /healthz: {status or body}"
            else:
                message = "gateway ready" if ok else f"gateway /readyz: {status} {body}"
            checks.append(Check(f"gateway.{name}", ok, message, status, 200))
    return checks


def _triton_health(triton_url: str, models: tuple[str, ...]) -> list[Check]:
    from llmctl.triton_client import http_health

    checks = []
    for name, (status, body) in http_health(triton_url, models).items():
        if name == "server":
            checks.append(
                Check(
                    "triton.ready",
                    status == 200,
                    f"Triton /v2/health/ready: {status or body}",
                    status,
                    200,
                )
            )
        else:
            checks.append(
                Check(
                    f"triton.{name}.ready",
                    status == 200,
                    f"Triton model {name}: {status or body}",
                    status,
                    200,
                )
            )
    return checks


def run_smoke(
    gateway_url: str,
    triton_url: str | None,
    question: dict[str, Any],
    token_for: Callable[[str, list[str]], str],
    models: tuple[str, ...] = (LLM_MODEL, EMBED_MODEL),
) -> tuple[GateResult, list[dict[str, Any]]]:
    """Health of gateway and Triton, then one answer that must carry a citation."""
    checks = _gateway_health(gateway_url)
    if triton_url:
        checks += _triton_health(triton_url, models)
    responses: list[dict[str, Any]] = []
    if all(c.passed for c in checks):
        from llmctl.gates.quality import ask_all

        record = ask_all(gateway_url, [question], token_for, workers=1, source="smoke")[0]
        responses.append(record)
        cited = record.get("citations") or []
        ok = record.get("status") == 200 and record.get("outcome") == "answered" and bool(cited)
        msg = (
            f"answered with {len(cited)} citations ({', '.join(dict.fromkeys(cited))})"
            if ok
            else f"no cited answer: HTTP {record.get('status')} outcome {record.get('outcome')} {record.get('error') or ''}".strip()
        )
        checks.append(Check("answer.with-citation", ok, msg, len(cited), 1))
    result = GateResult.from_checks("smoke", checks)
    return result, responses
