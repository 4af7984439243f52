"""The check gate's run: the blueprint's schema and semantic rules (``llmctl check``).

It comes first and loads the blueprint every other gate reads; the runner stops the run when it
does not pass.
"""

from __future__ import annotations

from llmctl.gates.results import Check, GateResult
from llmctl.gates.steps.base import GateContext

NAME = "check"


def run(ctx: GateContext) -> GateResult:
    """Errors fail the gate, warnings are reported as skipped checks; sets ``ctx.bp`` on a pass."""
    from llmctl.blueprint import check_file

    path = ctx.blueprint_path
    ctx.say(NAME, f"checking {path}", None)
    res = check_file(path)
    checks = [Check(f"{p.rule_id}@{p.line}:{p.col}", False, p.text()) for p in res.errors]
    checks += [Check(f"warning.{p.rule_id}@{p.line}:{p.col}", None, p.text()) for p in res.warnings]
    if not checks:
        checks = [Check("blueprint", True, f"{path}: schema and semantic rules pass")]
    gate = GateResult.from_checks(NAME, checks)
    if res.blueprint is not None and gate.ok:
        ctx.bp = res.blueprint
    return gate
