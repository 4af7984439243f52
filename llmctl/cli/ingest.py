"""``llmctl ingest``: read, chunk, embed and index a blueprint's documents.

Embeddings come from the running stack's Triton (model ``embedder``), the same model the gateway
embeds questions with: an index embedded by anything else would rank with a different model. So
the stack must be up; the index goes to ``$LLMCTL_HOME/<blueprint>/<target>/index``.
"""

from __future__ import annotations

from typing import Any

import typer

from llmctl.cli.options import BlueprintArg, TargetOpt
from llmctl.cli.output import OutputFormat, OutputOption, console, print_json
from llmctl.errors import StackError


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)


def triton_grpc_url(blueprint_name: str, target: str) -> str:
    """The gRPC address of the stack's Triton, from the local target's state; a one-line
    StackError telling the user to run ``llmctl up`` when it is not running."""
    from llmctl.local.supervisor import Supervisor
    from llmctl.state import StackState
    from llmctl.targets.local import TRITON

    state_dir = StackState.of(blueprint_name, target).dir
    sup = Supervisor(state_dir)
    rec = sup.record(TRITON)
    flag = "" if target == "local" else f" --target {target}"
    hint = f"run `llmctl up BLUEPRINT{flag}` first (no running stack for {blueprint_name!r} in {state_dir})"
    if rec is None or "grpc" not in rec.ports:
        raise StackError(f"Triton is not running: {hint}")
    health = sup.health(TRITON)
    if not health.ok:
        raise StackError(f"Triton is {health.state}: {hint}")
    return f"127.0.0.1:{rec.ports['grpc']}"


def ingest(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Index the blueprint's documents (only what changed) with the running stack's embedder."""
    from llmctl.blueprint import load_blueprint
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.ingest import ProgressEvent
    from llmctl.retrieval.ingest import ingest as run_ingest
    from llmctl.state import StackState

    bp = load_blueprint(blueprint)
    tgt = bp.target(target)
    if tgt.type != "local":
        raise StackError(
            f"target {target!r} is {tgt.type}: ingest there runs as part of `llmctl up --target "
            f"{target}`; this command embeds with the local stack"
        )
    if not bp.retrieval.enabled or not bp.retrieval.sources:
        raise StackError(f"{blueprint}: retrieval is disabled or has no sources; nothing to ingest")
    url = triton_grpc_url(bp.name, target)
    emb = bp.retrieval.embedding
    embedder = TritonEmbedder(
        url, model_id=emb.model, dim=int(emb.dimensions), batch_size=int(emb.batch_size)
    )
    index_dir = StackState.of(bp.name, target).index_dir

    try:
        if output is OutputFormat.json:
            report = run_ingest(bp, embedder, index_dir)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                console=console(stderr=True),
                transient=False,
            ) as bar:
                tasks: dict[str, Any] = {}

                def on_progress(e: ProgressEvent) -> None:
                    if e.stage not in tasks:
                        tasks[e.stage] = bar.add_task(e.stage, total=max(e.total, 1), note="")
                    bar.update(
                        tasks[e.stage], completed=e.done, total=max(e.total, 1), note=e.message
                    )

                report = run_ingest(bp, embedder, index_dir, progress=on_progress)
    finally:
        embedder.close()

    if output is OutputFormat.json:
        print_json(report.to_dict())
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(1)


def _render(report: Any) -> None:
    out = console()
    out.print(
        f"[bold]index[/] {report.index_dir}\n"
        f"  documents {report.documents}, chunks {report.chunks} "
        f"({report.chunks_embedded} embedded in {report.embed_seconds:.1f} s, "
        f"total {report.seconds:.1f} s)\n"
        f"  added {len(report.added)}, updated {len(report.updated)}, removed "
        f"{len(report.removed)}, unchanged {len(report.unchanged)}, skipped {len(report.skipped)}"
    )
    if report.rebuilt:
        out.print(f"  rebuilt: {report.rebuilt}")
    groups = ", ".join(f"{g} {n}" for g, n in report.acl_groups.items())
    out.print(f"  documents per ACL group: {groups or '-'}")
    out.print(
        f"  index hash {report.index_hash[:16]}"
        + ("" if report.changed else " (unchanged)")
        + (f"; {', '.join(report.indexes)}" if report.indexes else "")
    )
    for s in report.skipped:
        out.print(f"[yellow]skipped[/] {s.path}: {s.reason}")
    for e in report.errors:
        out.print(f"[red]error[/] {e.path}: {e.message}")
