"""``llmctl retire``: a revision out of service, into an archive that verifies, and back.

Retiring stops routing to the revision (it must no longer be active or a canary), waits until
the gateway has no request of it in flight, then writes the archive into a folder beside its
destination and renames it into place (an archive appears whole or not at all):

* ``model/``: the model build's manifest (key, parameters, weight digests) and the files of its
  Triton model version (the stand-in's code and ``settings.json``);
* ``index/``: one consistent version of the index as it is now (``llmctl.ops.live_copy``);
* ``config/``: the revision record (hashes and gateway settings), the gateway config and the
  blueprint, when its hash is the revision's;
* ``MANIFEST.json``: every file with its size and SHA-256 (``llmctl.ops.backup.file_list``), so
  ``verify_archive`` proves it whole.

Only then is its model version unloaded and deleted from the model repository, and the history
records it ``retired`` with the archive's location. ``restore_archive`` checks an archive and
serves its model version again, so ``llmctl rollback`` can make the revision active once more.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError
from llmctl.ops.backup import (
    MANIFEST_FILE,
    check_destination,
    file_list,
    local_folder,
    verify_folder,
)
from llmctl.rollout.canary import LocalRollout, Say
from llmctl.rollout.revisions import Revision
from llmctl.triton_protocol import LLM_MODEL

KIND = "llmctl-revision-archive"
FORMAT = 1
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RetireResult:
    revision: str
    archive: Path
    files: int
    unloaded_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "archive": str(self.archive),
            "files": self.files,
            "unloaded_version": self.unloaded_version,
        }

    def summary(self) -> list[str]:
        out = [f"retired {self.revision}: archive {self.archive} ({self.files} files, verified)"]
        if self.unloaded_version:
            out.append(f"  model version {self.unloaded_version} unloaded and deleted")
        return out


def _in_flight(gateway_url: str, revision: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(gateway_url.rstrip("/") + "/metrics", timeout=5.0).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (
                s.name == "llmctl_gateway_revision_requests_in_flight"
                and s.labels.get("revision") == revision
            ):
                return s.value
    return 0.0


def drain(gateway_url: str, revision: str, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
    """Wait until no request of ``revision`` is in flight (routing already sends it none)."""
    deadline = time.monotonic() + timeout_s
    while _in_flight(gateway_url, revision) > 0:
        if time.monotonic() > deadline:
            raise LlmctlError(
                f"revision {revision} still has requests in flight after {timeout_s:g} s; "
                "retire it again when they are done"
            )
        time.sleep(0.2)


def _model_files(r: LocalRollout, rev: Revision, dst: Path) -> None:
    from llmctl.local.repository import LocalRepository

    dst.mkdir(parents=True)
    build = LocalRepository().models_root / f"{LLM_MODEL}-{rev.model_hash}" / "manifest.json"
    if build.is_file():
        shutil.copy2(build, dst / "build-manifest.json")
    version = r.state.models_dir / LLM_MODEL / str(rev.llm_version)
    if version.is_dir():
        shutil.copytree(version, dst / "version")


def verify_archive(folder: Path) -> dict[str, Any]:
    """The archive's manifest once every file checks out; a one-line error otherwise."""
    return verify_folder(folder, KIND, FORMAT, "revision archive")


def retire(
    bp: Any, target: str, revision: str, archive_uri: str, say: Say | None = None
) -> RetireResult:
    """Stop routing, drain, archive, verify, unload and delete ``revision``; see the module."""
    from llmctl.ops.live_copy import copy_index

    r = LocalRollout(bp, target, say)
    rev = r.history.get(revision)
    if rev.state in ("active", "canary"):
        what = "roll out another revision first" if rev.state == "active" else "roll it back first"
        raise LlmctlError(f"revision {rev.id} is {rev.state}: {what} (`llmctl history`)")
    if rev.archive:
        raise LlmctlError(f"revision {rev.id} is already archived at {rev.archive}")
    dest = local_folder(archive_uri)
    check_destination(dest)
    r.stable()  # the routing file names only the active revision (and a canary, refused above)
    drain(r.stack.gateway_url, rev.id)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _model_files(r, rev, tmp / "model")
        if r.state.index_dir.is_dir():
            copy_index(r.state.index_dir, tmp / "index")
        config = tmp / "config"
        config.mkdir()
        (config / "revision.json").write_text(json.dumps(rev.to_dict(), indent=2, sort_keys=True))
        if r.state.gateway_config.is_file():
            shutil.copy2(r.state.gateway_config, config / "gateway.json")
        if bp.hash == rev.blueprint_hash:
            shutil.copy2(bp.path, config / "blueprint.yaml")
        files = file_list(tmp)
        manifest = {
            "kind": KIND,
            "format": FORMAT,
            "revision": rev.id,
            "blueprint": bp.name,
            "target": target,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        verify_archive(tmp)
        check_destination(dest)
        if dest.is_dir():
            dest.rmdir()
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    unloaded = None
    keep = r.history.in_state("active", "canary")
    if rev.llm_version not in {k.llm_version for k in keep}:
        r.drop_model(rev, keep)
        unloaded = rev.llm_version
    r.history.record(rev, "retired", f"archived to {dest}", archive=str(dest))
    return RetireResult(rev.id, dest, len(files), unloaded)


def restore_archive(bp: Any, target: str, archive_uri: str, say: Say | None = None) -> Revision:
    """Verify an archive and serve its model version again: the revision is then ``retired``
    and still served, which ``llmctl rollback`` can make active."""
    from llmctl.rollout.versions import add_version

    folder = local_folder(archive_uri)
    manifest = verify_archive(folder)
    doc = json.loads((folder / "config" / "revision.json").read_text())
    rev = Revision(**{k: v for k, v in doc.items() if k in Revision.__dataclass_fields__})
    r = LocalRollout(bp, target, say)
    version = folder / "model" / "version"
    build = folder / "model" / "build-manifest.json"
    if not version.is_dir() or not build.is_file():
        raise LlmctlError(f"{folder}: the archive holds no model version to serve")
    params = json.loads(build.read_text()).get("parameters") or {}
    gguf = Path(str(params.get("gguf_path", "")))
    if not gguf.is_file():
        raise LlmctlError(f"{folder}: its model file {gguf} is not on this machine; rebuild it")
    staged = r.state.dir / f".restore-{rev.id}"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(version, staged / "1")
    try:
        served = add_version(r.state.models_dir, r.grpc_url, staged, params, timeout_s=300.0)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return r.history.record(
        Revision(**{**rev.to_dict(), "llm_version": str(served), "archive": None}),
        "retired",
        f"restored from {folder} ({manifest['created_at']})",
    )
