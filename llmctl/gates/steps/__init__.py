"""The gates of ``llmctl verify``, one module per gate, registered here in the order they run.

Each module has ``NAME`` and ``run(ctx: GateContext) -> GateResult`` (see ``base``): it reads
what earlier gates left on the context, asks the stack, and calls the judging functions of its
``llmctl.gates.<gate>`` module. ``llmctl.gates.runner`` runs them.

1. check: the blueprint's schema and rules;
2. smoke: every component healthy, one cited answer;
3. load: the Locust profile from ``loadtests/`` with ``bp.gates_for(target).load``;
4. quality: the evaluation set through the gateway, against the stored baseline;
5. compliance: each requirement against the evidence this run recorded.
"""

from __future__ import annotations

from llmctl.gates.steps import check, compliance, load, quality, smoke
from llmctl.gates.steps.base import Gate, GateContext, VerifyOptions, VerifyProgress

__all__ = ["GATES", "GATE_ORDER", "Gate", "GateContext", "VerifyOptions", "VerifyProgress"]

GATES: tuple[Gate, ...] = (
    Gate(check.NAME, check.run),
    Gate(smoke.NAME, smoke.run),
    Gate(load.NAME, load.run, needs=smoke.NAME, unmet="the smoke gate failed"),
    Gate(quality.NAME, quality.run, needs=smoke.NAME, unmet="the smoke gate failed"),
    Gate(
        compliance.NAME,
        compliance.run,
        needs=smoke.NAME,
        unmet="no live evidence (the smoke gate failed)",
        on_skip=compliance.record_responses,
    ),
)

GATE_ORDER: tuple[str, ...] = tuple(g.name for g in GATES)
