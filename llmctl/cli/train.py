"""``llmctl train``: the data scientist -> Slurm operator hand-off.

- ``llmctl train BLUEPRINT --emit sbatch|job [--out FILE]`` writes the batch script (or the
  Kubernetes Job) for the blueprint's ``training`` section, for review or to submit by hand;
- ``llmctl train submit BLUEPRINT [--wait]`` submits it through sbatch and, with ``--wait``,
  follows it to its final state and records the run;
- ``llmctl train status BLUEPRINT [--job ID]`` shows the job's state (recording it once finished);
- ``llmctl train history BLUEPRINT`` lists the run records.

``BLUEPRINT --emit`` is the spelling the hand-off uses, so the group treats a first argument that
is not a sub-command as ``emit``'s blueprint.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption
from llmctl.cli.output import console, print_json


class _TrainGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["emit", *args]
        return super().parse_args(ctx, args)


train_app = typer.Typer(
    name="train",
    cls=_TrainGroup,
    help="The training job: `llmctl train BLUEPRINT --emit sbatch|job`, then submit, status, history.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


class Emit(StrEnum):
    sbatch = "sbatch"
    job = "job"


JobOpt = Annotated[
    str | None, typer.Option("--job", help="Job id (default: the latest submitted).")
]


@train_app.command("emit")
def emit_cmd(
    blueprint: BlueprintArg,
    emit: Annotated[
        Emit, typer.Option("--emit", help="sbatch: the Slurm batch script; job: a Kubernetes Job.")
    ] = Emit.sbatch,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: standard output).")
    ] = None,
) -> None:
    """Write the training job for the blueprint: a Slurm batch script or a Kubernetes Job."""
    from llmctl.blueprint import load_blueprint
    from llmctl.training import run

    bp = load_blueprint(blueprint)
    if emit is Emit.sbatch:
        text = run.render_sbatch(bp)
    else:
        from llmctl.training.k8s_job import render_job

        text = render_job(bp)
    if out is None:
        sys.stdout.write(text)
        return
    run.write_atomic(out, text, 0o755 if emit is Emit.sbatch else 0o644)
    console(stderr=True).print(f"wrote {out}", markup=False)


@train_app.command("submit")
def submit_cmd(
    blueprint: BlueprintArg,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the job to its final state and record it.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="With --wait: give up after this many seconds."),
    ] = None,
    test_only: Annotated[
        bool,
        typer.Option(
            "--test-only", help="Ask Slurm whether and when it would run the job; submit nothing."
        ),
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Submit the blueprint's training job through sbatch."""
    from llmctl.blueprint import load_blueprint
    from llmctl.errors import LlmctlError
    from llmctl.training import run

    bp = load_blueprint(blueprint)
    if test_only:
        ok, message = run.test_only(bp)
        if not ok:
            raise LlmctlError(f"Slurm would not run the job: {message}")
        if output is OutputFormat.json:
            print_json({"ok": ok, "slurm": message})
        else:
            console().print(message, markup=False)
        return
    sub = run.submit(bp)
    err = console(stderr=True)
    if not wait:
        if output is OutputFormat.json:
            print_json(sub.to_dict())
        else:
            console().print(
                f"submitted job {sub.job_id} (log {sub.log}); follow it with "
                f"`llmctl train status {blueprint}`",
                markup=False,
            )
        return
    err.print(f"submitted job {sub.job_id}; waiting (log {sub.log})", markup=False)

    def on_state(info: Any) -> None:
        if output is not OutputFormat.json:
            reason = f" ({info.reason})" if info.reason and info.reason != "None" else ""
            err.print(f"job {info.job_id}: {info.state}{reason}", markup=False)

    st = run.follow(bp, sub.job_id, on_state=on_state, timeout_s=timeout)
    _show(st, output)


@train_app.command("status")
def status_cmd(
    blueprint: BlueprintArg, job: JobOpt = None, output: OutputOption = OutputFormat.text
) -> None:
    """Show the training job's state; once it finished, its run record."""
    from llmctl.blueprint import load_blueprint
    from llmctl.training import run

    st = run.status(load_blueprint(blueprint), job)
    _show(st, output)


@train_app.command("history")
def history_cmd(blueprint: BlueprintArg, output: OutputOption = OutputFormat.text) -> None:
    """List the blueprint's training runs with their measured hours."""
    from llmctl.blueprint import load_blueprint
    from llmctl.training import history, run

    bp = load_blueprint(blueprint)
    records = history.read(run.state_of(bp))
    if output is OutputFormat.json:
        print_json(records)
        return
    out = console()
    if not records:
        out.print(f"no training runs recorded for {bp.name}", markup=False)
    for r in records:
        out.print(" ".join(_record_line(r)), markup=False)


def _record_line(r: dict[str, Any]) -> list[str]:
    parts = [
        f"job {r.get('job_id')} {r.get('state')}",
        f"{(r.get('duration_hours') or 0) * 3600:.0f} s",
        f"GPU-h {r.get('gpu_hours')}",
        f"CPU-h {r.get('cpu_hours')}",
    ]
    m = r.get("metrics") or {}
    k = m.get("k")
    if k:
        key = f"recall_at_{k}"
        before, after = m["recall_before"].get(key), m["recall_after"].get(key)
        parts.append(
            f"recall@{k} {before} -> {after} (held-out {m['recall_after'].get('questions')})"
        )
    if (r.get("artifact") or {}).get("hash"):
        parts.append(f"artifact {r['artifact']['hash'][:12]}")
    return parts


def _show(st: Any, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(st.record if st.record is not None else st.to_dict())
    else:
        out = console()
        job = st.job
        out.print(
            f"job {job.job_id}: {job.state}"
            + (f" ({job.reason})" if job.reason and job.reason != "None" else "")
            + (f" on {job.nodes}" if job.nodes else ""),
            markup=False,
        )
        if st.record is not None:
            out.print("  " + ", ".join(_record_line(st.record)[1:]), markup=False)
            model = Path(st.record["artifact"]["path"] or "") / "model"
            if st.record["state"] == "COMPLETED" and model.is_dir():
                out.print(
                    f"  candidate embedder: {model} (try it: set retrieval.embedding.model to "
                    "this folder, then `llmctl up` and `llmctl ingest`)",
                    markup=False,
                )
    if st.record is not None and st.record.get("state") != "COMPLETED":
        raise typer.Exit(1)
