"""``llmctl build|up|plan|status|down``: the stack verbs, for every kind of target.

Each command loads the blueprint, asks ``llmctl.targets.target_for`` for the named target and
calls one method of the ``Target`` interface; the result renders itself (``to_dict`` for
``--output json``, ``summary`` for people). Progress arrives through a callback shown with rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption, TargetOpt, YesOpt
from llmctl.cli.output import console, emit, print_json
from llmctl.errors import LlmctlError


def _target(blueprint: Path, target: str) -> Any:
    from llmctl.blueprint import load_blueprint
    from llmctl.targets import target_for

    return target_for(load_blueprint(blueprint), target)


def build(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Kubernetes targets: print the spec and steps only.")
    ] = False,
    emit_job: Annotated[
        Path | None,
        typer.Option(
            "--emit-job", help="Kubernetes targets: write a Job that builds on a GPU node."
        ),
    ] = None,
) -> None:
    """Build what the target serves: the local model repository, or TensorRT-LLM engines.

    Both are content-addressed: an unchanged build is never redone.
    """
    from llmctl.targets.base import BuildOptions

    t = _target(blueprint, target)
    with console().status("building") as st:
        result = t.build(BuildOptions(dry_run, emit_job), st.update)
    emit(result, output)


def plan(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show what `llmctl up` would change, changing nothing: exit 0 no changes, 2 changes."""
    t = _target(blueprint, target)
    result = t.plan(None if output is OutputFormat.json else typer.echo)
    emit(result, output)
    raise typer.Exit(2 if result.changed else 0)


def up(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
    yes: YesOpt = False,
) -> None:
    """Start (or update) the stack: preview, confirm, apply, smoke-test, print endpoints."""
    t = _target(blueprint, target)
    out = console()
    with out.status("planning") as st:
        plan = t.plan(st.update)
    if not plan.changed:
        _record_revision(blueprint, target)  # a stack started before histories existed
        if output is OutputFormat.json:
            print_json({"changed": False, "plan": plan.to_dict()})
        else:
            emit(plan, output)
        return
    if output is OutputFormat.text:
        emit(plan, output)
    if not yes:
        if output is OutputFormat.json:
            raise LlmctlError("--output json needs -y (there is no one to answer the question)")
        typer.confirm("apply this plan?", abort=True)
    with out.status("applying") as st:
        result = t.apply(plan, on_progress=st.update)
    _record_revision(blueprint, target, applied=True)
    emit(result, output)


def _record_revision(blueprint: Path, target: str, *, applied: bool = False) -> None:
    """Every applied plan is a revision (``llmctl history``); local targets record it here."""
    from llmctl.blueprint import load_blueprint
    from llmctl.rollout.revisions import record_up
    from llmctl.state import StackState

    bp = load_blueprint(blueprint)
    if bp.target(target).is_local:
        record_up(StackState.of(bp.name, target), bp, applied=applied)
    elif applied:
        from llmctl.rollout.kubernetes import record_applied
        from llmctl.targets.kubernetes import resolve_spec

        record_applied(bp, target, resolve_spec(bp, target))


def status(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Health of each component and model; exit 1 when something is dead, hung, missing or stale."""
    result = _target(blueprint, target).status()
    emit(result, output)
    if not result.ok:
        raise typer.Exit(1)


def down(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Stop everything the stack started and remove its runtime state (logs are kept)."""
    t = _target(blueprint, target)
    with console().status("stopping") as st:
        result = t.destroy(on_progress=st.update)
    emit(result, output)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("up")(up)
    app.command("plan")(plan)
    app.command("status")(status)
    app.command("down")(down)
