"""``llmctl render``: a kubernetes target's manifests, validated, with no cluster and no Pulumi CLI.

The Pulumi program runs under Pulumi's mock runtime; the manifests it would submit are written one
file per object (plus kustomization.yaml) for review or a GitOps tool. ``plan`` lives with the
other stack verbs in ``llmctl.cli.stack``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, OutputFormat, OutputOption
from llmctl.cli.output import emit
from llmctl.errors import LlmctlError


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
    return KubernetesTarget(load_blueprint(blueprint), target, build_job=job)


def render(
    blueprint: BlueprintArg,
    target: Annotated[
        str, typer.Option("--target", "-t", help="A kubernetes target of the blueprint.")
    ],
    out: Annotated[Path, typer.Option("--out", "-d", help="Folder for the manifests (created).")],
    build_job: Annotated[
        Path | None,
        typer.Option(
            "--build-job", help="Engine build Job YAML (llmctl build --emit-job) to include."
        ),
    ] = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Write the target's Kubernetes manifests (one file per object + kustomization.yaml) and
    validate them against the Kubernetes schemas; exit 1 if any manifest is invalid."""
    result = _target(blueprint, target, build_job).render(out)
    emit(result, output)
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("render")(render)
