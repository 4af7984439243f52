"""``llmctl history|rollout|rollback|retire``: changing a running service safely.

The verbs are thin: ``llmctl.rollout`` holds the revisions (``revisions``), the step-by-step
rollout and the A/B experiment (``canary``), and retiring into an archive (``archive``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption, TargetOpt, YesOpt
from llmctl.cli.output import console, emit, print_json
from llmctl.errors import LlmctlError


def _blueprint(path: Path) -> Any:
    from llmctl.blueprint import load_blueprint

    return load_blueprint(path)


def _local_only(bp: Any, target: str) -> None:
    if not bp.target(target).is_local:
        raise LlmctlError(
            f"target {target!r} is kubernetes: `llmctl rollout {bp.path} --target {target} "
            "--weight W` sets the canary's share, then `llmctl plan`/`up` apply it"
        )


def _confirm(yes: bool, output: OutputFormat, question: str) -> None:
    if yes:
        return
    if output is OutputFormat.json:
        raise LlmctlError("--output json needs -y (there is no one to answer the question)")
    typer.confirm(question, abort=True)


class _Rows:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def to_dict(self) -> dict[str, Any]:
        return {"revisions": self.rows}

    def summary(self) -> list[str]:
        if not self.rows:
            return ["no revisions yet: `llmctl up` records the first"]
        out = [f"{'id':<12}  {'state':<11}  {'created':<20}  model             note"]
        for r in self.rows:
            out.append(
                f"{r['id']:<12}  {r['state']:<11}  {r['created_at']:<20}  "
                f"{str(r['model_hash'])[:16]:<16}  {r['note']}"
            )
        return out


def history(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """The stack's revisions, newest first: id, state, times and hashes."""
    from llmctl.rollout.revisions import History, history_rows
    from llmctl.state import StackState

    bp = _blueprint(blueprint)
    bp.target(target)
    revs = History(StackState.of(bp.name, target).revisions_file).revisions().values()
    emit(_Rows(history_rows(revs)), output)


def _steps(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise LlmctlError(f"--steps {text!r}: expected percentages like 5,25,50,100") from None


def rollout(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    steps: Annotated[
        str, typer.Option("--steps", help="Canary weights in percent, in order.")
    ] = "5,25,50,100",
    step_duration: Annotated[
        float, typer.Option("--step-duration", help="Seconds of traffic observed per step.")
    ] = 60.0,
    quality_sample: Annotated[
        int,
        typer.Option("--quality-sample", help="Evaluation questions asked of each arm per step."),
    ] = 4,
    min_requests: Annotated[
        int, typer.Option("--min-requests", help="Canary requests a step needs as evidence.")
    ] = 20,
    experiment: Annotated[
        bool,
        typer.Option("--experiment", help="A/B test: two arms for --step-duration, no promotion."),
    ] = False,
    split: Annotated[float, typer.Option("--split", help="Experiment: percent on arm b.")] = 50.0,
    weight: Annotated[
        float | None,
        typer.Option("--weight", help="Kubernetes targets: the canary's percent of subjects."),
    ] = None,
    output: OutputOption = OutputFormat.text,
    yes: YesOpt = False,
) -> None:
    """Put the blueprint's revision beside the running one and shift traffic step by step;
    promote it when every step passes, roll it back at the first that does not (exit 1)."""
    from llmctl.rollout.canary import run_experiment, run_rollout

    bp = _blueprint(blueprint)
    if not bp.target(target).is_local:
        from llmctl.rollout.kubernetes import start
        from llmctl.targets.kubernetes import resolve_spec

        if weight is None:
            raise LlmctlError(f"target {target!r} is kubernetes: give the canary's --weight")
        intent = start(bp, target, weight, resolve_spec(bp, target, rollout=False))
        if output is OutputFormat.json:
            print_json(intent)
        else:
            typer.echo(
                f"canary {intent['canary']['id']} at {weight:g}% beside {intent['stable']['id']}: "
                f"`llmctl plan {blueprint} --target {target}` shows it, `llmctl up` applies it"
            )
        return
    _local_only(bp, target)
    _confirm(yes, output, "start the rollout?")
    with console().status("rolling out") as st:
        if experiment:
            report = run_experiment(
                bp,
                target,
                split=split,
                duration_s=step_duration,
                quality_sample=quality_sample,
                say=st.update,
            )
        else:
            report = run_rollout(
                bp,
                target,
                steps=_steps(steps),
                step_duration_s=step_duration,
                quality_sample=quality_sample,
                min_requests=min_requests,
                say=st.update,
            )
    emit(report, output)
    if report.outcome == "rolled-back":
        raise typer.Exit(1)


def rollback(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
    yes: YesOpt = False,
) -> None:
    """End a rollout now, or return to the previous revision while it is still served."""
    from llmctl.rollout.canary import rollback as do_rollback

    bp = _blueprint(blueprint)
    if not bp.target(target).is_local:
        from llmctl.rollout.kubernetes import stop

        intent = stop(bp, target)
        typer.echo(
            f"rollout of {intent['canary']['id']} removed: `llmctl up {blueprint} --target "
            f"{target}` routes everyone to {intent['stable']['id']}"
            if intent
            else "no rollout in progress"
        )
        return
    _confirm(yes, output, "roll back?")
    emit(do_rollback(bp, target), output)


def retire(
    blueprint: BlueprintArg,
    revision: Annotated[str, typer.Option("--revision", help="The revision id (or a prefix).")],
    archive: Annotated[
        str, typer.Option("--archive", help="Folder (path or file://) the archive is written to.")
    ],
    target: TargetOpt = "local",
    restore: Annotated[
        bool, typer.Option("--restore", help="Serve the archived revision again instead.")
    ] = False,
    output: OutputOption = OutputFormat.text,
    yes: YesOpt = False,
) -> None:
    """Stop routing to a revision, drain it, archive it (verified), unload and delete it."""
    from llmctl.rollout.archive import restore_archive
    from llmctl.rollout.archive import retire as do_retire

    bp = _blueprint(blueprint)
    _local_only(bp, target)
    if restore:
        rev = restore_archive(bp, target, archive)
        if output is OutputFormat.json:
            print_json(rev.to_dict())
        else:
            typer.echo(
                f"restored {rev.id} from {archive}: served as version {rev.llm_version}; "
                f"`llmctl rollback {blueprint}` makes it active"
            )
        return
    _confirm(yes, output, f"retire revision {revision} into {archive}?")
    emit(do_retire(bp, target, revision, archive), output)


def register(app: typer.Typer) -> None:
    app.command("history")(history)
    app.command("rollout")(rollout)
    app.command("rollback")(rollback)
    app.command("retire")(retire)
