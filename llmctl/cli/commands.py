"""The typer application: every verb, registered from the explicit table below.

Each verb lives in its own module under ``llmctl/cli/`` and registers itself through
``COMMAND_MODULES``, so a newcomer finds any verb from its file name. Heavy imports (torch,
pulumi, locust, tritonclient) happen inside the verbs that need them, never here. ``llmctl check``
usually does not come here at all: see ``llmctl/cli/fast.py``.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from llmctl import __version__
from llmctl.cli.failures import report_error, report_internal_error
from llmctl.errors import LlmctlError

app = typer.Typer(
    name="llmctl",
    help="Turn one YAML blueprint into a running, verified, self-hosted LLM service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per verb (or group of verbs); each exposes ``register(app)``.
COMMAND_MODULES: tuple[str, ...] = (
    "llmctl.cli.check",
    "llmctl.cli.schema",
    "llmctl.cli.init",
    "llmctl.cli.stack",
    "llmctl.cli.gateway",
    "llmctl.cli.ingest",
    "llmctl.cli.size",
    "llmctl.cli.k8s",
    "llmctl.cli.engines",
    "llmctl.cli.verify",
    "llmctl.cli.audit",
    "llmctl.cli.backup",
    "llmctl.cli.runbook",
    "llmctl.cli.train",
    "llmctl.cli.rollout",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Turn one YAML blueprint into a running, verified, self-hosted LLM service."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Run the app, turning llmctl's own errors into one line and an exit code."""
    debug = os.environ.get("LLMCTL_DEBUG") == "1"
    try:
        rc = app(standalone_mode=False)
    except LlmctlError as exc:
        if debug:
            raise
        sys.exit(report_error(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's usage errors (typer may vendor click) and real bugs
        if callable(getattr(exc, "show", None)) and isinstance(
            getattr(exc, "exit_code", None), int
        ):
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        sys.exit(report_internal_error(exc))
    sys.exit(rc if isinstance(rc, int) else 0)
