"""Loading the YAML data files shipped in ``llmctl/data`` (read once, cached).

pyyaml is imported here, on first use, so that importing ``llmctl.sizing`` stays cheap for
``llmctl check``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

# The package's data folder (declared as package data in pyproject.toml). A plain path rather than
# importlib.resources: that import alone costs more than reading the three files.
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@cache
def load_data(name: str) -> dict[str, Any]:
    """Return the parsed ``llmctl/data/<name>`` file; the result is shared, do not mutate it."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml is ~10x faster
    text = (_DATA_DIR / name).read_text(encoding="utf-8")
    return yaml.load(text, Loader=loader) or {}
