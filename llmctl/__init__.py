"""llmctl: one YAML blueprint to a running, verified, self-hosted LLM service."""

from __future__ import annotations

__version__ = "0.1.0"
