"""Shared test configuration. Stack fixtures (real Triton, gateway) live in their own modules."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = ROOT / "blueprints"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


from stack_fixtures import local_stack, stack_dirs  # noqa: E402,F401  (real Triton; see that module)
