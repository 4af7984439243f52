"""The runtime assets that live at the repository's top level: where they are, installed or not.

The design card keeps ``engines/`` (Triton model-repository templates), ``loadtests/`` (Locust user
classes) and ``schemas/`` (the blueprint JSON Schema) as top-level folders of the repository. The
wheel carries copies of them under ``llmctl/_assets/`` (``setup.py`` maps them in at build time),
so an installed llmctl finds its templates without a checkout; a checkout (editable install) reads
the folders themselves. Every caller asks here, so that choice is made once.
"""

from __future__ import annotations

from pathlib import Path

from llmctl.errors import LlmctlError

#: The top-level folders the wheel bundles.
BUNDLED = ("engines", "loadtests", "schemas")

_PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """The folder ``name`` (one of ``BUNDLED``): the wheel's copy, else the checkout's."""
    if name not in BUNDLED:
        raise ValueError(f"not a bundled asset folder: {name!r}")
    bundled = _PACKAGE / "_assets" / name
    if bundled.is_dir():
        return bundled
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name  # a checkout (editable install), never another site-packages folder
    raise LlmctlError(
        f"llmctl's {name}/ folder is missing from {_PACKAGE}: reinstall llmctl "
        "(pip install --force-reinstall llmctl) or run it from a checkout"
    )
