"""``llmctl verify``: check, smoke, load, quality and compliance gates; exit 1 when one fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, TargetOpt
from llmctl.cli.output import OutputFormat, OutputOption, console, print_json


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write JUnit XML here (for CI).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Folder for verify.json, index.html, plots and evidence."),
    ] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Store this run's quality scores as the baseline."),
    ] = False,
    eval_limit: Annotated[
        int | None,
        typer.Option(
            "--eval-limit", min=1, help="Ask at most N evaluation questions (quick runs)."
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Gateway URL of a deployed target (default: the target's ingress host or "
            "recorded endpoint; the local stack for local targets).",
        ),
    ] = None,
    token_command: Annotated[
        str | None,
        typer.Option(
            "--token-command",
            help="Program printing a bearer token, with {user} and {groups} (comma-separated) "
            "substituted; run without a shell. Default: network.auth.tokenUrl (client "
            "credentials from the env vars the blueprint names), or the local dev issuer.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Run the gates against the running stack, or a deployed one (--url); exit 0 when all
    pass, 1 when any fails."""
    from llmctl.gates.verify import verify as run_verify

    report_dir = report or Path(".llmctl-verify")
    remote = {"url": url, "token_command": token_command}
    if output is OutputFormat.json:
        result = run_verify(
            blueprint,
            target,
            report_dir=report_dir,
            junit=junit,
            update_baseline=update_baseline,
            eval_limit=eval_limit,
            url=remote["url"],
            token_command=remote["token_command"],
        )
        print_json(result.to_dict())
    else:
        result = _with_progress(
            blueprint, target, report_dir, junit, update_baseline, eval_limit, remote
        )
        _render(result, junit)
    if not result.ok:
        raise typer.Exit(1)


def _with_progress(
    blueprint: Path,
    target: str,
    report_dir: Path,
    junit: Path | None,
    update: bool,
    limit: int | None,
    remote: dict[str, str | None],
) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from llmctl.gates.verify import verify as run_verify

    out = console(stderr=True)
    with Progress(
        TextColumn("{task.description:<11}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=out,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(gate: str, message: str, fraction: float | None) -> None:
            if gate not in tasks:
                tasks[gate] = bar.add_task(gate, total=1.0, note="")
            bar.update(
                tasks[gate],
                note=message[:90],
                **({"completed": fraction} if fraction is not None else {}),
            )

        return run_verify(
            blueprint,
            target,
            report_dir=report_dir,
            junit=junit,
            update_baseline=update,
            eval_limit=limit,
            on_progress=on_progress,
            url=remote["url"],
            token_command=remote["token_command"],
        )


def _render(result: Any, junit: Path | None) -> None:
    from rich.table import Table

    out = console()
    table = Table("gate", "status", "finding")
    colour = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    for g in result.gates:
        table.add_row(g.name, f"[{colour.get(g.status, 'white')}]{g.status}[/]", g.message)
    out.print(table)
    comp = result.gate("compliance")
    if comp is not None and comp.checks:
        req = Table("requirement check", "status", "evidence → finding")
        for c in comp.checks:
            req.add_row(
                c.name,
                f"[{colour.get(c.status, 'white')}]{c.status}[/]",
                f"{c.evidence}\n→ {c.message}",
            )
        out.print(req)
    verdict = (
        "[green]all gates passed[/]" if result.ok else f"[red]failed: {', '.join(result.failed)}[/]"
    )
    out.print(
        f"{verdict}  ·  report {result.report_dir}/index.html"
        + (f"  ·  junit {junit}" if junit else "")
    )
