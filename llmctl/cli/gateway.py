"""``llmctl token`` and ``llmctl ask``: talk to a running gateway as a given user.

Locally, ``token`` signs a development JWT with the stack's own dev key and ``ask`` does that for
you before calling the gateway over HTTP, so the request takes exactly the production path (auth,
ACL prefilter, audit). For other targets pass ``--url`` and a real ``--token``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from llmctl.cli.options import BlueprintArg, TargetOpt
from llmctl.cli.output import OutputFormat, OutputOption, print_json
from llmctl.errors import LlmctlError


def register(app: typer.Typer) -> None:
    app.command("token")(token)
    app.command("ask")(ask)


def _groups(raw: str) -> list[str]:
    return [g.strip() for g in raw.split(",") if g.strip()]


def _state_dir_for(blueprint: Path | None, target: str | None) -> Path:
    """The local stack whose dev issuer signs: the blueprint's, or the only one there is."""
    from llmctl.state import StackState, llmctl_home, stacks_with_dev_issuer

    if blueprint is not None:
        from llmctl.blueprint import load_blueprint

        return StackState.of(load_blueprint(blueprint).name, target or "local").dir
    home = llmctl_home()
    found = stacks_with_dev_issuer(target, home)
    if len(found) == 1:
        return found[0].dir
    which = f"{target!r} stack" if target else "stack"
    if not found:
        raise LlmctlError(
            f"no local {which} with a development issuer under {home}; run `llmctl up` first"
        )
    names = ", ".join(f"{s.blueprint} ({s.target})" for s in found)
    raise LlmctlError(
        f"several stacks under {home}: {names}; name one with --blueprint and --target"
    )


def _gateway_url(state_dir: Path, target: str) -> str:
    from llmctl.gateway.component import COMPONENT_NAME
    from llmctl.local.supervisor import Supervisor

    rec = Supervisor(state_dir).record(COMPONENT_NAME)
    if rec is None or not rec.ports.get("http"):
        flag = "" if target == "local" else f" --target {target}"
        raise LlmctlError(
            f"no gateway is running for {state_dir}; start the stack with `llmctl up BLUEPRINT{flag}`"
        )
    return f"http://127.0.0.1:{rec.ports['http']}"


def token(
    user: Annotated[str, typer.Option("--user", "-u", help="Subject (sub claim) of the token.")],
    groups: Annotated[str, typer.Option("--groups", "-g", help="Comma-separated groups.")] = "",
    ttl: Annotated[int, typer.Option("--ttl", help="Lifetime in seconds.", min=1)] = 3600,
    blueprint: Annotated[
        Path | None,
        typer.Option("--blueprint", "-b", help="Blueprint of the stack (needed if several run)."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Target name (default: local, or the only stack)."),
    ] = None,
) -> None:
    """Mint a development bearer token signed by the local stack's dev issuer."""
    from llmctl.gateway.auth import mint_dev_token

    state_dir = _state_dir_for(blueprint, target)
    typer.echo(mint_dev_token(state_dir, user=user, groups=_groups(groups), ttl_s=ttl))


def ask(
    blueprint: BlueprintArg,
    question: Annotated[str, typer.Argument(help="The question.")],
    as_user: Annotated[
        str, typer.Option("--as", help="Ask as this user (local dev token).")
    ] = "dev",
    groups: Annotated[
        str, typer.Option("--groups", "-g", help="Comma-separated groups of that user.")
    ] = "",
    target: TargetOpt = "local",
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Sources to retrieve.", min=1)
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Gateway URL (default: the local stack's).")
    ] = None,
    bearer: Annotated[
        str | None,
        typer.Option(
            "--token", help="Bearer token (default: mint a local dev token).", envvar="LLMCTL_TOKEN"
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the answer.")
    ] = 120.0,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Ask the running gateway a question and print the answer with its citations."""
    from llmctl.blueprint import load_blueprint
    from llmctl.gateway.auth import mint_dev_token
    from llmctl.gateway.client import GatewayClient

    kind = load_blueprint(blueprint).target(target).type  # a typo names the known targets
    if kind != "local":
        if url is None or bearer is None:
            raise LlmctlError(
                f"target {target!r} is {kind}: pass its gateway's --url and a --token (or "
                "LLMCTL_TOKEN) from your identity provider"
            )
        base = url
    else:
        state_dir = _state_dir_for(blueprint, target)
        base = url or _gateway_url(state_dir, target)
        if bearer is None:
            bearer = mint_dev_token(state_dir, user=as_user, groups=_groups(groups), ttl_s=300)
    with GatewayClient(base, bearer, timeout=timeout) as client:
        response = client.ask(question, top_k=top_k)  # LlmctlError when it cannot be reached
    body = response.body
    if response.status != 200:
        if output is OutputFormat.json:
            print_json({"status": response.status, **body})
            raise typer.Exit(1)
        detail = body.get("error") or body
        raise LlmctlError(f"gateway answered HTTP {response.status}: {detail}")
    if output is OutputFormat.json:
        print_json(body)
        return
    _render(body)


def _render(body: dict[str, Any]) -> None:
    from llmctl.cli.output import console

    out = console()
    out.print(body.get("answer", ""), markup=False)
    citations = body.get("citations") or []
    if citations:
        out.print()
        out.print("[bold]Sources[/bold]")
        for number, c in enumerate(citations, 1):
            heading = f" — {c['heading']}" if c.get("heading") else ""
            where = f"{c.get('path', '')}, score {c.get('score')}"
            out.print(f"  [{number}] {c.get('title', '')}{heading}  ({where})", markup=False)
    timings = body.get("timings") or {}
    out.print(
        f"[dim]request {body.get('request_id')} · {timings.get('total_ms', 0):.0f} ms · "
        f"blueprint {str(body.get('blueprint_hash', ''))[:12]}[/dim]"
    )
    if os.environ.get("LLMCTL_DEBUG") == "1":
        out.print(body.get("usage"))
