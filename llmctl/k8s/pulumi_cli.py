"""The one module that knows the Pulumi CLI (the Automation API drives it as a subprocess).

Everything else calls ``preview``, ``up``, ``destroy`` and ``outputs`` here. State lives in a
``file://`` backend under ``$LLMCTL_HOME/pulumi`` unless ``PULUMI_BACKEND_URL`` says otherwise; the
stack's secrets are encrypted with ``PULUMI_CONFIG_PASSPHRASE``, which must be set (Pulumi would
otherwise prompt, and there may be nobody to answer).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmctl.errors import StackError
from llmctl.k8s.stackref import StackRef
from llmctl.stacks.spec import StackSpec
from llmctl.state import pulumi_backend_dir

PROJECT = "llmctl"
NO_CLI = (
    "the Pulumi CLI is not installed (needed by plan/up/status/down on kubernetes targets): "
    "install it from https://www.pulumi.com/docs/install/ and put `pulumi` on PATH, "
    "or run `llmctl render BLUEPRINT --target NAME --out DIR` and apply the manifests with your GitOps tool"
)
#: Operations that change something; "same" and "read" do not.
CHANGES = ("create", "update", "delete", "replace", "create-replacement", "delete-replaced")

OnLine = Callable[[str], None]


class StackAbsent(StackError):
    """The named stack does not exist in the backend (status: not deployed; down: nothing to do)."""


def cli_path() -> str | None:
    return shutil.which("pulumi")


def require_cli() -> str:
    path = cli_path()
    if path is None:
        raise StackError(NO_CLI)
    return path


def backend_url() -> str:
    url = os.environ.get("PULUMI_BACKEND_URL")
    if url:
        return url
    folder = pulumi_backend_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"file://{folder}"


def require_passphrase() -> None:
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ or "PULUMI_CONFIG_PASSPHRASE_FILE" in os.environ:
        return
    raise StackError(
        "PULUMI_CONFIG_PASSPHRASE is not set: Pulumi encrypts the stack's secrets with it; "
        "export it (the same value every time for this stack)"
    )


def stack_name(ref: StackRef | StackSpec) -> str:
    return f"{ref.name}-{ref.target}"


@dataclass
class PreviewSummary:
    stack: str
    changes: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.changes.get(op, 0) for op in CHANGES)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "changes": self.changes, "changed": self.changed}


def select_stack(spec: StackRef | StackSpec) -> Any:
    """Create or select the stack for this blueprint and target, with the program inline.

    A bare ``StackRef`` (status, destroy) gets an empty program: those operations read the
    stack's state and never run the program."""
    require_cli()
    require_passphrase()
    from pulumi import automation as auto

    from llmctl.stacks.program import program

    settings = auto.ProjectSettings(
        name=PROJECT, runtime="python", backend=auto.ProjectBackend(backend_url())
    )
    opts = auto.LocalWorkspaceOptions(project_settings=settings, secrets_provider="passphrase")
    try:
        if isinstance(spec, StackSpec):
            stack = auto.create_or_select_stack(
                stack_name=stack_name(spec), project_name=PROJECT, program=program(spec), opts=opts
            )
        else:  # status and down look at a stack; they never create one
            stack = auto.select_stack(
                stack_name=stack_name(spec), project_name=PROJECT, program=_no_program, opts=opts
            )
        if spec.context:
            stack.set_config("kubernetes:context", auto.ConfigValue(spec.context))
    except auto.StackNotFoundError as exc:
        raise StackAbsent(f"stack {stack_name(spec)!r} does not exist in {backend_url()}") from exc
    except auto.CommandError as exc:
        raise StackError(
            f"pulumi: cannot open stack {stack_name(spec)!r}: {_first_line(exc)}"
        ) from exc
    return stack


def _no_program() -> None:
    """The program of a stack opened by identity only (never run by destroy or outputs)."""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "error:" in line:
            return line.strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _sink(on_line: OnLine | None) -> Callable[[str], None] | None:
    if on_line is None:
        return None

    def emit(text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                on_line(line)

    return emit


def preview(spec: StackSpec, on_line: OnLine | None = None) -> PreviewSummary:
    from pulumi import automation as auto

    stack = select_stack(spec)
    try:
        result = stack.preview(on_output=_sink(on_line), color="never")
    except auto.CommandError as exc:
        raise StackError(f"pulumi preview failed: {_first_line(exc)}") from exc
    return PreviewSummary(
        stack_name(spec), {str(k): int(v) for k, v in (result.change_summary or {}).items()}
    )


def up(spec: StackSpec, on_line: OnLine | None = None) -> dict[str, Any]:
    from pulumi import automation as auto

    stack = select_stack(spec)
    try:
        result = stack.up(on_output=_sink(on_line), color="never")
    except auto.CommandError as exc:
        raise StackError(
            f"pulumi up failed: {_first_line(exc)} (the stack keeps what was applied; run `llmctl status`)"
        ) from exc
    return {
        "stack": stack_name(spec),
        "changes": dict(result.summary.resource_changes or {}),
        "outputs": {k: v.value for k, v in result.outputs.items()},
    }


def destroy(spec: StackRef | StackSpec, on_line: OnLine | None = None) -> dict[str, Any]:
    """Pulumi destroy; a stack that was never created has nothing to destroy (no changes)."""
    from pulumi import automation as auto

    try:
        stack = select_stack(spec)
    except StackAbsent:
        return {"stack": stack_name(spec), "changes": {}}
    try:
        result = stack.destroy(on_output=_sink(on_line), color="never")
    except auto.CommandError as exc:
        raise StackError(f"pulumi destroy failed: {_first_line(exc)}") from exc
    return {"stack": stack_name(spec), "changes": dict(result.summary.resource_changes or {})}


def outputs(spec: StackRef | StackSpec) -> dict[str, Any]:
    """The stack's outputs; none (an empty dict) when the stack was never created."""
    from pulumi import automation as auto

    try:
        stack = select_stack(spec)
    except StackAbsent:
        return {}
    try:
        return {k: v.value for k, v in stack.outputs().items()}
    except auto.CommandError as exc:
        raise StackError(
            f"pulumi: cannot read the outputs of {stack_name(spec)!r}: {_first_line(exc)}"
        ) from exc
