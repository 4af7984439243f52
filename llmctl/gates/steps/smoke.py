"""The smoke gate's run: find the stack, then ``llmctl.gates.smoke.run_smoke`` against it.

The stack is the one the caller gave; else, with ``--url`` or for a target that is not local, the
gateway at that URL (``llmctl.gates.remote``, tokens from ``llmctl.gates.identity``); else the
target's running local stack. The checks themselves (health
of gateway and Triton, one cited answer) live in ``llmctl.gates.smoke``.
"""

from __future__ import annotations

from typing import Any

from llmctl.errors import LlmctlError
from llmctl.gates.askers import probe_groups
from llmctl.gates.identity import CommandTokenSource, token_source
from llmctl.gates.remote import RemoteStack, gateway_endpoint
from llmctl.gates.results import ERROR, FAILED, GateResult
from llmctl.gates.smoke import run_smoke
from llmctl.gates.stack import Stack
from llmctl.gates.steps.base import GateContext

NAME = "smoke"


def run(ctx: GateContext) -> GateResult:
    """Health of every component and one cited answer; sets ``ctx.stack`` when one is found."""
    ctx.say(NAME, "health of every component, one cited answer", None)
    first = next((q for q in ctx.questions if q.get("kind") != "restricted"), None)
    opts = ctx.options
    if ctx.stack is not None:
        # the fallback questions differ between the two paths; kept as they were
        question = first or _fallback(ctx, "What is the leave policy?")
    elif opts.url or not ctx.target_spec.is_local:
        try:
            url = gateway_endpoint(ctx.bp, ctx.target, opts.url)
            tokens = token_source(ctx.bp, ctx.target, token_command=opts.token_command)
        except LlmctlError as exc:
            return GateResult(NAME, ERROR, str(exc))
        ctx.say(NAME, f"{url}, tokens from the {tokens.description}", None)
        ctx.stack = RemoteStack(url, tokens)
        question = first or _fallback(ctx, "What is the annual leave policy?")
    else:
        try:
            ctx.stack = Stack(ctx.bp, ctx.target)
            if opts.token_command:
                command = CommandTokenSource(opts.token_command)
                ctx.stack.token_for = command.token_for  # type: ignore[method-assign]
        except LlmctlError as exc:
            return GateResult(NAME, FAILED, str(exc))
        question = (
            first if first is not None else _fallback(ctx, "What is the annual leave policy?")
        )
    stack = ctx.stack
    gate, got = run_smoke(stack.gateway_url, stack.triton_url, question, stack.token_for)
    ctx.evidence.responses += got
    return gate


def _fallback(ctx: GateContext, question: str) -> dict[str, Any]:
    """The question asked when the evaluation set has no answerable one."""
    return {"question": question, "asker_groups": probe_groups(ctx.bp), "id": "smoke"}
