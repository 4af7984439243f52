"""Runs the registered gates in order: skips, timing and progress in one place.

- The first gate (check) loads the blueprint. When it fails, nothing else can run: every later
  gate is recorded as skipped ("the blueprint does not pass `llmctl check`") without being
  announced or timed. When it passes, the inputs the later gates share are read once
  (``GateContext.read_inputs``), between gates, so no gate's time includes them.
- A gate whose prerequisite (``Gate.needs``) did not pass is recorded as skipped with the reason
  (``Gate.unmet``), after its ``on_skip``; it is timed and announced like a gate that ran, so a
  failed run still reports every gate.
- Every recorded gate gets its wall time (``GateResult.seconds``) and a final progress message
  ``"<status>: <message>"`` with fraction 1.0.

Gates return failures as results instead of raising, so one run reports all of them; an
exception from a gate (an unreadable evaluation set, say) ends ``verify`` as it always did.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from llmctl.gates.results import SKIPPED, GateResult
from llmctl.gates.steps import GATES, Gate, GateContext

NO_BLUEPRINT = "the blueprint does not pass `llmctl check`"


def skipped(name: str, why: str) -> GateResult:
    """A gate that did not run, and why."""
    return GateResult(name, SKIPPED, f"not run: {why}")


def run_gates(ctx: GateContext, gates: Sequence[Gate] = GATES) -> None:
    """Run ``gates`` (check first) on ``ctx``, appending each result to ``ctx.result.gates``."""
    first, *later = gates
    _run_one(ctx, first)
    if ctx.bp is None:
        ctx.result.gates += [skipped(g.name, NO_BLUEPRINT) for g in later]
        return
    ctx.read_inputs()
    for gate in later:
        _run_one(ctx, gate)


def _run_one(ctx: GateContext, gate: Gate) -> GateResult:
    t = time.monotonic()
    prerequisite = ctx.result.gate(gate.needs) if gate.needs else None
    if gate.needs and (prerequisite is None or not prerequisite.ok):
        if gate.on_skip is not None:
            gate.on_skip(ctx)
        result = skipped(gate.name, gate.unmet)
    else:
        result = gate.run(ctx)
    result.seconds = time.monotonic() - t
    ctx.result.gates.append(result)
    ctx.say(result.name, f"{result.status}: {result.message}", 1.0)
    return result
