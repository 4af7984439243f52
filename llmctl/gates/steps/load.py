"""The load gate's run: simulated employees through the Locust profile, judged by ``load_gate``.

Identities and questions come from ``llmctl.gates.askers``; the profile runs in a child process
(``llmctl.gates.load.run_profile``); the samples feed the report's plots and the responses the
compliance gate.
"""

from __future__ import annotations

from typing import Any

from llmctl.errors import LlmctlError
from llmctl.gates import load
from llmctl.gates.askers import identities_and_questions
from llmctl.gates.results import GateResult
from llmctl.gates.steps.base import GateContext

NAME = "load"


def run(ctx: GateContext) -> GateResult:
    """``bp.gates_for(target).load``'s users for its duration; a runner failure is an error."""
    stack = ctx.stack
    lg = ctx.thresholds.load
    ctx.say(NAME, f"{lg.users} users, spawn {lg.spawn_rate:g}/s, {lg.duration_s:g} s", 0.0)
    try:
        identities, questions = identities_and_questions(
            ctx.bp, ctx.target, lg.users, stack.token_for
        )
    except LlmctlError as exc:  # a token source that fails: one line, the run goes on
        return load.load_gate(None, lg, f"no tokens for the load users: {exc}")
    spec = load.LoadSpec(
        host=stack.gateway_url,
        users=lg.users,
        spawn_rate=lg.spawn_rate,
        duration_s=lg.duration_s,
        identities=identities,
        questions=questions or [{"question": "What is the leave policy?", "asker_groups": []}],
    )

    def on_load(event: dict[str, Any]) -> None:
        if event.get("event") == "progress":
            p95 = event.get("p95_ms")
            ctx.say(
                NAME,
                f"{event['users']} users · {event['requests']} requests · {event['failures']} failed"
                + (f" · p95 {p95 / 1e3:.1f} s" if p95 else ""),
                min(1.0, event["elapsed_s"] / max(event["duration_s"], 1e-9)),
            )

    result: dict[str, Any] | None = None
    try:
        result = load.run_profile(spec, on_progress=on_load, workdir=ctx.evidence_dir)
        gate = load.load_gate(result, lg)
    except Exception as exc:
        gate = load.load_gate(None, lg, f"the load profile failed: {exc}")
    if result is not None:
        ctx.evidence.load_result = result
        ctx.evidence.samples = result.get("samples", [])
        ctx.evidence.responses += result.get("responses", [])
    return gate
