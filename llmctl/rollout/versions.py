"""Model versions beside each other on the local Triton: how a canary revision is served.

Triton's parameters belong to a model, not to a version, so a second version of the local LLM
stand-in carries its own parameters (GGUF, context, threads) in ``<version>/settings.json``,
which the stand-in reads at load (engines/local/tensorrt_llm/model.py). The served model's
``config.pbtxt`` names the versions to serve (``version_policy: specific``); changing it and
asking Triton to load the model (explicit model control) brings a version up or down while the
others keep answering. The gateway reaches a version by its generate route
(``/v2/models/tensorrt_llm/versions/<n>/generate_stream``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from llmctl.errors import StackError
from llmctl.triton_protocol import LLM_MODEL

POLICY = re.compile(r"\n?version_policy\s*:\s*\{[^{}]*(\{[^{}]*\}[^{}]*)*\}\n?")


def model_dir(models_dir: Path) -> Path:
    return models_dir / LLM_MODEL


def served_versions(models_dir: Path) -> list[int]:
    """The version folders of the served LLM model, in order."""
    root = model_dir(models_dir)
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def _write_policy(models_dir: Path, versions: list[int]) -> None:
    config = model_dir(models_dir) / "config.pbtxt"
    text = POLICY.sub("\n", config.read_text())
    listed = ", ".join(str(v) for v in versions)
    text = text.rstrip() + f"\nversion_policy: {{ specific: {{ versions: [ {listed} ] }} }}\n"
    tmp = config.with_suffix(".pbtxt.tmp")
    tmp.write_text(text)
    tmp.replace(config)


def _reload(grpc_url: str, versions: list[int], timeout_s: float) -> None:
    from llmctl.triton_client import ControlError, ModelControl

    with ModelControl(grpc_url) as control:
        try:
            control.load(LLM_MODEL, timeout_s)
        except ControlError as exc:
            raise StackError(
                f"Triton could not load {LLM_MODEL} versions {versions}: {exc}"
            ) from exc
        down = [v for v in versions if not control.model_ready(LLM_MODEL, version=str(v))]
    if down:
        raise StackError(f"{LLM_MODEL} versions {down} are not ready after loading")


def add_version(
    models_dir: Path, grpc_url: str, build_dir: Path, parameters: dict[str, Any], timeout_s: float
) -> int:
    """Serve the build in ``build_dir`` (a cached local model folder) as the next version.

    On failure the new version is removed again and the others keep serving.
    """
    versions = served_versions(models_dir)
    new = (max(versions) if versions else 0) + 1
    dest = model_dir(models_dir) / str(new)
    shutil.copytree(build_dir / "1", dest)
    settings = {k: v for k, v in parameters.items() if k != "max_batch_size"}
    (dest / "settings.json").write_text(json.dumps(settings, indent=2, sort_keys=True))
    try:
        _write_policy(models_dir, [*versions, new])
        _reload(grpc_url, [*versions, new], timeout_s)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        _write_policy(models_dir, versions)
        _reload(grpc_url, versions, timeout_s)
        raise
    return new


def remove_version(models_dir: Path, grpc_url: str, version: int, timeout_s: float) -> None:
    """Stop serving ``version`` and delete it from the model repository."""
    versions = served_versions(models_dir)
    if version not in versions:
        return
    rest = [v for v in versions if v != version]
    if not rest:
        raise StackError(f"version {version} is the only one of {LLM_MODEL}; it cannot be removed")
    _write_policy(models_dir, rest)
    _reload(grpc_url, rest, timeout_s)
    shutil.rmtree(model_dir(models_dir) / str(version), ignore_errors=True)
