"""A Pulumi stack's identity: all ``status`` and ``destroy`` need, and nothing that sizes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StackRef:
    """``<name>-<target>`` in the llmctl project, on the kubeconfig ``context``.

    ``llmctl.stacks.spec.StackSpec`` has the same three fields, so either can name a stack."""

    name: str
    target: str
    context: str | None
