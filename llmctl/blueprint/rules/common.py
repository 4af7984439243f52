"""Lookups shared by rules, cached so that a check stays fast."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def architecture(model_id: str) -> Any | None:
    """The model's architecture when llmctl knows it (catalogue, local path, HF cache), else None.

    Rules that need it apply only when it is known: an unknown model is not an error in itself
    (``llmctl size`` says how to supply its config).
    """
    try:
        from llmctl.sizing import load_architecture
    except ImportError:  # pragma: no cover - the sizing package is part of llmctl
        return None
    try:
        return load_architecture(model_id)
    except Exception:
        return None


@cache
def gpu(name: str) -> Any | None:
    try:
        from llmctl.sizing import get_gpu

        return get_gpu(name)
    except Exception:
        return None
