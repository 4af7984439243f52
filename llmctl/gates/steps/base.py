"""What every gate of a verify run sees (``GateContext``) and how it is registered (``Gate``).

All gates have one signature, ``run(ctx) -> GateResult``, so the runner can order, skip, time and
report them alike. What one gate leaves for the next (the blueprint, the stack, the responses,
the load figures) travels on the context, not through return values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.gates.askers import doc_acls
from llmctl.gates.quality import load_eval_set
from llmctl.gates.results import GateResult, VerifyResult

if TYPE_CHECKING:
    pass

#: ``on_progress(gate, message, fraction)``: fraction in 0..1 when the gate knows it, else None.
VerifyProgress = Callable[[str, str, float | None], None]


def no_progress(_gate: str, _message: str, _fraction: float | None) -> None:
    """The progress callback when the caller gives none."""


@dataclass(frozen=True)
class VerifyOptions:
    """The caller's choices that change what a gate does (not what it judges)."""

    update_baseline: bool = False
    eval_limit: int | None = None
    quality_workers: int = 2
    url: str | None = None  # a gateway reached over the network (a deployed target)
    token_command: str | None = None  # prints a token for {user} {groups} (identity.py)


@dataclass
class RunEvidence:
    """What this run recorded, for the compliance gate (responses, load figures) and the plots."""

    responses: list[dict[str, Any]] = field(default_factory=list)  # every request this run made
    samples: list[dict[str, Any]] = field(default_factory=list)  # load events, for the plots
    load_result: dict[str, Any] | None = None  # the load runner's result document


@dataclass
class GateContext:
    """One verify run: its inputs, what the gates found so far, and where to report.

    ``bp`` is set by the check gate when the blueprint passes, the fields after it by
    ``read_inputs``; ``stack`` is the stack the caller gave, else the one the smoke gate found.
    """

    blueprint_path: Path
    target: str
    report_dir: Path
    result: VerifyResult
    options: VerifyOptions = field(default_factory=VerifyOptions)
    say: VerifyProgress = no_progress
    stack: Any = None
    evidence: RunEvidence = field(default_factory=RunEvidence)
    bp: Any = None  # the Blueprint, set once the check gate passes (gates after it need it)
    target_spec: Any = None  # bp.target(target)
    thresholds: Any = None  # bp.gates_for(target): the gates' thresholds with target overrides
    doc_acls: dict[str, Sequence[str]] = field(default_factory=dict)  # document -> its ACL
    questions: list[dict[str, Any]] = field(default_factory=list)  # the whole evaluation set

    @property
    def evidence_dir(self) -> Path:
        return self.report_dir / "evidence"

    def read_inputs(self) -> None:
        """Read, once, what every gate after check shares: target, thresholds, ACLs, eval set."""
        bp = self.bp
        self.result.blueprint = bp.name
        self.target_spec = bp.target(self.target)
        self.thresholds = bp.gates_for(self.target)
        self.doc_acls = dict(doc_acls(bp)) if bp.retrieval.enabled else {}
        eval_set = self.thresholds.quality.eval_set
        self.questions = load_eval_set(bp.resolve_path(eval_set)) if eval_set else []


@dataclass(frozen=True)
class Gate:
    """One gate in the run order.

    ``needs``: the gate that must have passed (or been skipped) for this one to run; when it did
    not, this gate is recorded as skipped with ``unmet`` as the reason, after ``on_skip`` (what
    the gate does even then, e.g. keep the evidence recorded so far).
    """

    name: str
    run: Callable[[GateContext], GateResult]
    needs: str | None = None
    unmet: str = ""
    on_skip: Callable[[GateContext], object] | None = None
