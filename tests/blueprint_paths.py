"""One helper for tests that write a copy of an example blueprint somewhere else.

A blueprint's paths are relative to its own file; a copy in a temporary folder keeps pointing
at the repository's corpora, evaluation set, baseline and training data only when they are made
absolute. Every relative path field the schema has is listed here, so a new one is added once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def absolute_paths(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    """``doc`` (changed in place and returned) with its file paths resolved against ``base``."""

    def fix(value: Any) -> Any:
        return str((base / value).resolve()) if isinstance(value, str) else value

    for source in (doc.get("retrieval") or {}).get("sources") or []:
        source["path"] = fix(source["path"])
    quality = (doc.get("gates") or {}).get("quality") or {}
    for key in ("evalSet", "baseline"):
        if key in quality:
            quality[key] = fix(quality[key])
    training = doc.get("training") or {}
    for key in ("dataset", "script"):
        if key in training:
            training[key] = fix(training[key])
    return doc
