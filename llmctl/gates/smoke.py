"""The smoke gate: every component answers its health check and one question gets a cited answer.

It runs before the load gate because a load test against a half-started stack measures nothing
but connection errors; when it fails, the later gates that need the stack do not run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmctl.gates.results import Check, GateResult


def _get(url: str, timeout_s: float = 5.0) -> tuple[int | None, str]:
    import httpx

    try:
        r = httpx.get(url, timeout=timeout_s)
        return r.status_code, r.text[:200]
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def run_smoke(
    gateway_url: str,
    triton_url: str | None,
    question: dict[str, Any],
    token_for: Callable[[str, list[str]], str],
    models: tuple[str, ...] = ("ensemble", "embedder"),
) -> tuple[GateResult, list[dict[str, Any]]]:
    """Health of gateway and Triton, then one answer that must carry a citation."""
    checks: list[Check] = []
    status, body = _get(f"{gateway_url}/healthz")
    checks.append(
        Check("gateway.healthz", status == 200, f"gateway /healthz: {status or body}", status, 200)
    )
    status, body = _get(f"{gateway_url}/readyz")
    checks.append(
        Check(
            "gateway.readyz",
            status == 200,
            f"gateway /readyz: {status} {body}" if status != 200 else "gateway ready",
            status,
            200,
        )
    )
    if triton_url:
        status, body = _get(f"{triton_url}/v2/health/ready")
        checks.append(
            Check(
                "triton.ready",
                status == 200,
                f"Triton /v2/health/ready: {status or body}",
                status,
                200,
            )
        )
        for model in models:
            status, body = _get(f"{triton_url}/v2/models/{model}/ready")
            checks.append(
                Check(
                    f"triton.{model}.ready",
                    status == 200,
                    f"Triton model {model}: {status or body}",
                    status,
                    200,
                )
            )
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
