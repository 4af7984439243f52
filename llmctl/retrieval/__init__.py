"""Retrieval: documents with ACLs -> chunks -> embeddings -> an index searched with the caller's
groups as a prefilter. Import the submodules; this package imports nothing heavy on purpose."""

from __future__ import annotations

import os
from pathlib import Path


def llmctl_home() -> Path:
    """``$LLMCTL_HOME`` (default ``./.llmctl``), see docs/CONTRACTS.md."""
    return Path(os.environ.get("LLMCTL_HOME") or ".llmctl")


def index_dir(blueprint_name: str, target: str = "local") -> Path:
    """Where a blueprint's index lives for a target: ``$LLMCTL_HOME/<blueprint>/<target>/index``."""
    return llmctl_home() / blueprint_name / target / "index"
