"""``llmctl audit rotate-key|find|verify``: the audit trail's question key ring, for operators
and investigators, and its hash chain.

Audit records carry an HMAC of the question, not the question (unless the blueprint sets
``includeQuestionText``), so reading the trail says nothing about what was asked. Whoever holds
the stack's key ring (``auth/question-keys.json``, 0600) can still answer "who asked this?":
``find`` HMACs the question with every key of the ring and lists the records that match.
``rotate-key`` starts a new key without a restart and keeps the old ones, so older records stay
findable. Neither verb ever prints a key. ``verify`` walks the trail's hash chain
(``llmctl.gateway.audit_chain``) and exits 1 at the first record removed or edited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption, TargetOpt
from llmctl.cli.output import emit
from llmctl.errors import LlmctlError
from llmctl.state import StackState

audit_app = typer.Typer(
    name="audit",
    help="The audit trail: rotate its question key, find who asked a question, verify its chain.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


def _local_state(blueprint: Path, target: str) -> StackState:
    """The stack folder of a local target; other targets keep no key ring on this machine."""
    from llmctl.blueprint import load_blueprint

    bp = load_blueprint(blueprint)
    kind = bp.target(target).type  # a typo names the known targets
    if kind != "local":
        raise LlmctlError(
            f"target {target!r} is {kind}: its gateway keeps no question key ring on this machine;"
            " the audit verbs work on local targets only"
        )
    return StackState.of(bp.name, target)


@dataclass
class Rotated:
    """What ``rotate-key`` did: the new key's id, never the key."""

    key_id: str
    path: Path
    keys: int

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "path": str(self.path), "keys": self.keys}

    def summary(self) -> list[str]:
        return [
            f"new active question key {self.key_id} ({self.keys} keys in {self.path}; the older "
            "ones still match older records)",
            "a running gateway uses it within about a second, no restart needed",
        ]


@dataclass
class Found:
    """The records of one question, by request id, time, subject, outcome and key id."""

    audit_file: Path
    records_read: int
    matches: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_file": str(self.audit_file),
            "records_read": self.records_read,
            "matches": self.matches,
        }

    def summary(self) -> list[str]:
        if not self.matches:
            return [f"no record matches ({self.records_read} records read in {self.audit_file})"]
        lines = [f"{len(self.matches)} of {self.records_read} records match:"]
        for m in self.matches:
            lines.append(
                f"  {m['request_id']}  {m['time']}  subject={m['subject']}  "
                f"outcome={m['outcome']}  key={m['key_id']}"
            )
        return lines


@audit_app.command("rotate-key")
def rotate_key(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Add a new active question key to the stack's ring, keeping the old ones; prints its id."""
    from llmctl.gateway.questionkeys import load_ring, question_keys_path, rotate_question_key

    path = question_keys_path(_local_state(blueprint, target).dir)
    key = rotate_question_key(path)
    emit(Rotated(key.key_id, path, len(load_ring(path).keys)), output)


@audit_app.command("find")
def find(
    blueprint: BlueprintArg,
    question: Annotated[
        str, typer.Option("--question", "-q", help="The exact question text to look for.")
    ],
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """List the audit records of a question (request id, time, subject, outcome, key id).

    The text must be exactly what was asked: the HMAC of a question differs in every byte.
    """
    from llmctl.gates.compliance.evidence import read_audit
    from llmctl.gateway.questionkeys import load_ring, match_records, question_keys_path

    state = _local_state(blueprint, target)
    ring = load_ring(question_keys_path(state.dir))
    audit_file = state.audit_file
    try:
        records = read_audit(audit_file)
    except (OSError, ValueError) as exc:
        raise LlmctlError(
            f"{audit_file}: cannot read the audit trail ({exc}); check the files are the "
            "gateway's own audit JSONL"
        ) from None
    if not records and not audit_file.exists():
        raise LlmctlError(
            f"{audit_file}: no audit trail here; the gateway writes it once it serves a request"
        )
    emit(Found(audit_file, len(records), match_records(ring, question, records)), output)


@audit_app.command("verify")
def verify(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    head: Annotated[
        str | None,
        typer.Option("--head", help="A head hash noted earlier: fail unless the trail holds it."),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Check the audit trail's hash chain and archive hashes; exit 1 at the first break."""
    from llmctl.gateway.audit_chain import verify_trail

    state = _local_state(blueprint, target)
    if not trail_exists(state.audit_file):
        raise LlmctlError(
            f"{state.audit_file}: no audit trail here; the gateway writes it once it serves a "
            "request"
        )
    report = verify_trail(state.audit_file, head=head)
    emit(report, output)
    if not report.ok:
        raise typer.Exit(1)


def trail_exists(audit_file: Path) -> bool:
    from llmctl.gateway.audit import trail_files

    return bool(trail_files(audit_file))
