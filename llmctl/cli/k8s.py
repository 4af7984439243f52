"""``llmctl render`` and ``llmctl plan``: the kubernetes target's manifests and its preview.

``render`` needs no cluster and no Pulumi CLI (Pulumi's mock runtime); ``plan`` previews through
the Automation API and exits 0 with no changes, 2 with changes, 1 on error.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.errors import LlmctlError


class Output(StrEnum):
    text = "text"
    json = "json"


BlueprintArg = Annotated[Path, typer.Argument(help="The blueprint YAML file.", dir_okay=False)]
TargetOpt = Annotated[
    str, typer.Option("--target", "-t", help="A kubernetes target of the blueprint.")
]
FormatOpt = Annotated[Output, typer.Option("--output", help="text for people, json for tools.")]


def _target(blueprint: Path, target: str, build_job: Path | None = None) -> Any:
    from llmctl.blueprint import load_blueprint
    from llmctl.targets.kubernetes import KubernetesTarget

    job = None
    if build_job is not None:
        import yaml

        try:
            job = yaml.safe_load(build_job.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise LlmctlError(f"{build_job}: cannot read the engine build Job: {exc}") from exc
    return KubernetesTarget.from_blueprint(load_blueprint(blueprint), target, build_job=job)


def render(
    blueprint: BlueprintArg,
    target: TargetOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder for the manifests (created).")],
    build_job: Annotated[
        Path | None,
        typer.Option(
            "--build-job", help="Engine build Job YAML (llmctl build --emit-job) to include."
        ),
    ] = None,
    output: FormatOpt = Output.text,
) -> None:
    """Write the target's Kubernetes manifests (one file per object + kustomization.yaml) and
    validate them against the Kubernetes schemas; exit 1 if any manifest is invalid."""
    t = _target(blueprint, target, build_job)
    result = t.render(out)
    if output is Output.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(
            f"wrote {len(result.files)} manifests to {result.out_dir} (+ kustomization.yaml)"
        )
        typer.echo(
            f"validated {len(result.validated)} against Kubernetes {result.schema_version} schemas"
        )
        for line in result.skipped + result.notes:
            typer.echo(f"note: {line}")
        for line in result.errors:
            typer.secho(f"invalid: {line}", err=True, fg=typer.colors.RED)
    if not result.ok:
        raise typer.Exit(1)


def plan(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: FormatOpt = Output.text,
) -> None:
    """Preview what `llmctl up` would change: exit 0 no changes, 2 changes, 1 error."""
    from llmctl.blueprint import load_blueprint

    bp = load_blueprint(blueprint)
    if bp.target(target).type != "kubernetes":
        return _local_plan(bp, target, output)
    from llmctl.targets.kubernetes import KubernetesTarget

    t = KubernetesTarget.from_blueprint(bp, target)
    result = t.plan(on_progress=None if output is Output.json else typer.echo)
    if output is Output.json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(result.changes.items())) or "nothing"
        typer.echo(f"stack {result.stack!r}: {summary}")
    raise typer.Exit(result.exit_code)


def _local_plan(bp: Any, target: str, output: Output) -> None:
    """The local target's plan, with the same exit codes."""
    from llmctl.local.spec import local_spec_from_blueprint
    from llmctl.targets.local import LocalTarget

    result = LocalTarget(local_spec_from_blueprint(bp)).plan()
    if output is Output.json:
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        for action in result.actions:
            typer.echo(f"  {action.verb:8} {action.subject}  {action.reason}")
        if not result.changed:
            typer.echo(f"stack {result.stack!r} is up to date")
    raise typer.Exit(2 if result.changed else 0)


def register(app: typer.Typer) -> None:
    app.command("render")(render)
    app.command("plan")(plan)
