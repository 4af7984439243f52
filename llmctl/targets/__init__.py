"""Deployment targets: one interface, several places to run the same blueprint.

A target turns a blueprint into running components and reports on them. ``local`` runs
processes on this machine (``llmctl.targets.local``); ``kubernetes`` runs the Pulumi program
(``llmctl.targets.kubernetes``). ``target_for`` is the only place that assembles one, and the CLI
speaks only the ``Target`` protocol, so a new target needs no new verbs.

Every call returns a typed result with ``to_dict()`` (what ``--output json`` prints) and
``summary()`` (the lines a person reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmctl.targets.base import DestroyResult, ProgressFn, Result, Target

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

__all__ = ["DestroyResult", "ProgressFn", "Result", "Target", "target_for"]


def target_for(bp: Blueprint, name: str, *, home: Path | None = None) -> Target:
    """The target ``name`` of ``bp``, with every component it runs.

    Local: Triton plus, when retrieval answers questions, the gateway, with state in
    ``llmctl.state.StackState.of(bp.name, name)``. Kubernetes: the Pulumi stack
    ``<blueprint>-<target>``; only ``build``, ``plan`` and ``apply`` size the blueprint.
    """
    kind = bp.target(name).type
    if kind == "local":
        from llmctl.targets.local import local_target

        return local_target(bp, name, home=home)
    if kind == "kubernetes":
        from llmctl.targets.kubernetes import KubernetesTarget

        return KubernetesTarget(bp, name)
    from llmctl.errors import LlmctlError

    raise LlmctlError(f"target {name!r} has type {kind!r}, which llmctl cannot run")
