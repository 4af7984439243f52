"""Pulumi programs and components for llmctl's kubernetes target (see ../docs/KUBERNETES.md).

Import-light on purpose: ``llmctl.stacks.spec`` needs neither pulumi nor pulumi_kubernetes, so the CLI can
resolve a spec (and fail clearly) before the heavy SDKs load; ``llmctl.stacks.program`` imports them.
"""

from __future__ import annotations

from .spec import StackSpec, spec_from_blueprint

__all__ = ["StackSpec", "spec_from_blueprint"]
