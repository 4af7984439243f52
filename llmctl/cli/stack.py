"""``llmctl build|up|status|down``: the stack verbs (the ``local`` target; kubernetes is wired elsewhere).

Each command loads the blueprint, asks one core object for one thing and renders the answer; the
core reports progress through a callback that this module shows with rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmctl.cli.output import OutputFormat as Output
from llmctl.cli.output import OutputOption as OutputOpt
from llmctl.cli.output import console as _shared_console
from llmctl.cli.output import print_json
from llmctl.errors import LlmctlError

if TYPE_CHECKING:
    from llmctl.targets.local import LocalTarget


BlueprintArg = Annotated[
    Path, typer.Argument(help="The blueprint YAML file.", exists=False, dir_okay=False)
]
TargetOpt = Annotated[
    str, typer.Option("--target", "-t", help="Which of the blueprint's targets (default: local).")
]


def _console() -> Any:
    return _shared_console()


def _resolve(blueprint: Path, target: str) -> tuple[Any, str]:
    """The blueprint and the type of the named target (local or kubernetes)."""
    from llmctl.blueprint import load_blueprint

    bp = load_blueprint(blueprint)
    return bp, bp.target(target).type


def local_target(bp: Any) -> LocalTarget:
    """The local target of a blueprint: Triton plus, when retrieval serves answers, the gateway.

    The gateway's engine version is the LLM's local build key, so audit records name the exact
    model repository that answered; the index version is read by the gateway from the index.
    """
    from llmctl.gateway.component import gateway_component
    from llmctl.local.spec import local_spec_from_blueprint
    from llmctl.targets.local import LocalTarget

    spec = local_spec_from_blueprint(bp)

    def gateway(target: LocalTarget, endpoints: Any) -> Any:
        engine = target.repository.keys(target.spec).get("ensemble", "")
        return gateway_component(
            target.state_dir,
            bp,
            triton_url=endpoints.get("triton_http", ""),
            triton_grpc_url=endpoints.get("triton_grpc", ""),
            index_dir=target.state_dir / "index",
            engine_hash=engine,
        )

    return LocalTarget(spec, extra_components=(gateway,))


def _kubernetes_target(bp: Any, target: str) -> Any:
    from llmctl.targets.kubernetes import KubernetesTarget

    return KubernetesTarget.from_blueprint(bp, target)


def _dump(data: Any) -> None:
    print_json(data)


def build(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOpt = Output.text,
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
    bp, kind = _resolve(blueprint, target)
    console = _console()
    if kind != "local":
        from llmctl.cli.engines import show_build_result
        from llmctl.engine.build import build_production

        with console.status("building engine") as st:
            result = build_production(
                bp, target, dry_run=dry_run, emit_job=emit_job, progress=st.update
            )
        show_build_result(result, output.value)
        return
    if dry_run or emit_job:
        raise LlmctlError("--dry-run and --emit-job apply to kubernetes targets (TensorRT-LLM)")
    t = local_target(bp)
    with console.status("building model repository") as status:
        builds = t.repository.build(t.spec, on_progress=lambda m: status.update(m))
    if output is Output.json:
        _dump(
            [{"model": b.name, "key": b.key, "path": str(b.path), "built": b.built} for b in builds]
        )
        return
    for b in builds:
        verb = "built" if b.built else "unchanged"
        console.print(f"{b.name:10} {b.key}  {verb:9}  {b.path}")
    if not any(b.built for b in builds):
        console.print("nothing to do: every model is already built")


def up(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOpt = Output.text,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> None:
    """Start (or update) the stack: preview, confirm, apply, smoke-test, print endpoints."""
    bp, kind = _resolve(blueprint, target)
    console = _console()
    if kind != "local":
        _up_kubernetes(_kubernetes_target(bp, target), console, output, yes)
        return
    t = local_target(bp)
    plan = t.plan()
    if not plan.changed:
        if output is Output.json:
            _dump({"changed": False, "plan": plan.to_dict(), "endpoints": t.endpoints()})
        else:
            console.print(f"stack {plan.stack!r} is up to date (plan {plan.plan_hash}); no changes")
            _print_endpoints(console, t.endpoints())
        return
    if output is Output.text:
        console.print(f"plan for stack {plan.stack!r} (local):")
        for action in plan.actions:
            console.print(
                f"  [bold]{action.verb:8}[/bold] {action.subject}  [dim]{action.reason}[/dim]"
            )
    if not yes:
        if output is Output.json:
            raise LlmctlError("--output json needs -y (there is no one to answer the question)")
        typer.confirm("apply this plan?", abort=True)
    with console.status("applying") as status:
        result = t.apply(plan, on_progress=lambda m: status.update(m))
    if output is Output.json:
        _dump(result.to_dict())
        return
    console.print(f"[green]stack {plan.stack!r} is up[/green] in {result.seconds:.1f} s")
    if result.smoke is not None:
        console.print(
            f"smoke test: {result.smoke.deltas} streamed deltas "
            f"({result.smoke.generation.strip()[:40]!r}), embeddings {result.smoke.embedding_shape}"
        )
    _print_endpoints(console, result.endpoints)


def _print_endpoints(console: Any, endpoints: dict[str, str]) -> None:
    for name, url in endpoints.items():
        console.print(f"  {name:15} {url}")


def status(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOpt = Output.text,
) -> None:
    """Health of each component and model; exit 1 when something is dead, hung or stale."""
    bp, kind = _resolve(blueprint, target)
    if kind != "local":
        k8s = _kubernetes_target(bp, target).status()
        if output is Output.json:
            _dump(k8s)
        else:
            _console().print(k8s)
        if not k8s.get("ok"):
            raise typer.Exit(1)
        return
    t = local_target(bp)
    st = t.status()
    if output is Output.json:
        _dump(st.to_dict())
    else:
        from rich.table import Table

        console = _console()
        console.print(f"stack {st.stack!r} (local): [bold]{st.state}[/bold]  ({st.state_dir})")
        if st.components:
            table = Table("component", "state", "pid", "uptime", "ports", "detail")
            for c in st.components:
                uptime = f"{c.uptime_s:.0f} s" if c.uptime_s is not None else "-"
                ports = " ".join(f"{k}={v}" for k, v in c.ports.items())
                table.add_row(c.name, c.state, str(c.pid or "-"), uptime, ports, c.detail)
            console.print(table)
        if st.models:
            table = Table("model", "version", "state", "build key", "expected")
            for m in st.models:
                table.add_row(m.name, m.version, m.state, m.key or "-", m.expected_key or "-")
            console.print(table)
        _print_endpoints(console, st.endpoints)
        for problem in st.problems:
            console.print(f"[red]problem:[/red] {problem}")
    if not st.ok:
        raise typer.Exit(1)


def down(
    blueprint: BlueprintArg,
    target: TargetOpt = "local",
    output: OutputOpt = Output.text,
) -> None:
    """Stop everything the stack started and remove its runtime state (logs are kept)."""
    bp, kind = _resolve(blueprint, target)
    console = _console()
    if kind != "local":
        with console.status("destroying") as st:
            res = _kubernetes_target(bp, target).destroy(on_progress=st.update)
        if output is Output.json:
            _dump(res)
        else:
            console.print(f"stack {res.get('stack')} destroyed: {res.get('changes')}")
        return
    t = local_target(bp)
    with console.status("stopping") as status:
        stopped = t.destroy(on_progress=lambda m: status.update(m))
    if output is Output.json:
        _dump({"stack": t.spec.name, "stopped": stopped})
    elif stopped:
        console.print(f"stopped {', '.join(stopped)}; stack {t.spec.name!r} is down")
    else:
        console.print(f"stack {t.spec.name!r} was not running; nothing to stop")


def _up_kubernetes(t: Any, console: Any, output: Output, yes: bool) -> None:
    with console.status("previewing") as st:
        plan = t.plan(on_progress=st.update)
    if not plan.changed:
        if output is Output.json:
            _dump({"changed": False})
        else:
            console.print("no changes")
        return
    if output is Output.text:
        console.print(f"changes: {plan.changes}")
    if not yes:
        if output is Output.json:
            raise LlmctlError("--output json needs -y (there is no one to answer the question)")
        typer.confirm("apply this plan?", abort=True)
    with console.status("applying") as st:
        res = t.apply(plan, on_progress=st.update)
    if output is Output.json:
        _dump(res)
    else:
        console.print(f"applied {res.get('changes')}; gateway: {res.get('outputs', {}).get('url')}")


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("up")(up)
    app.command("status")(status)
    app.command("down")(down)
