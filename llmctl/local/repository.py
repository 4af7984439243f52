"""Build the local target's Triton model repository into a content-addressed cache.

Each model (``tensorrt_llm``, ``embedder``) is rendered from ``engines/local/<model>/`` into
``$LLMCTL_CACHE/local/models/<model>-<key>/`` where the key hashes everything that decides what the
model serves: the template files, the rendered parameters and the sha256 of the weights. So an
unchanged model is never rebuilt, a changed one gets a new key (and ``up`` reloads exactly that
model), and ``manifest.json`` next to it records the inputs.

Weights are not copied: ``config.pbtxt`` names their absolute path and sha256. Hashing a 100 MB
GGUF takes a while, so file digests are cached by (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.assets import asset_dir
from llmctl.errors import BuildError
from llmctl.local.onnx_export import EXPORT_FORMAT, OPSET, export_embedder
from llmctl.local.spec import LocalStackSpec
from llmctl.triton_client import LLM_MODEL

ENV_CACHE = "LLMCTL_CACHE"
ENV_TEMPLATES = "LLMCTL_LOCAL_TEMPLATES"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TEMPLATE_SUFFIX = ".tmpl"
FORMAT_VERSION = 1

ProgressFn = Callable[[str], None]


def cache_root() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "llmctl").expanduser()


def templates_root() -> Path:
    override = os.environ.get(ENV_TEMPLATES)
    if override:
        return Path(override)
    return asset_dir("engines") / "local"


# -- file digests ------------------------------------------------------------------------------
class DigestCache:
    """sha256 of files, remembered by (absolute path, size, mtime_ns) in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._dirty = False

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def file(self, path: Path) -> str:
        path = path.resolve()
        st = path.stat()
        entries = self._load()
        key = str(path)
        hit = entries.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return str(hit["sha256"])
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = h.hexdigest()
        entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        self._dirty = True
        return digest

    def tree(self, root: Path) -> str:
        """One digest for a folder: its files' relative paths and digests (hidden files skipped)."""
        h = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if any(part.startswith(".") or part == "__pycache__" for part in rel.split("/")):
                continue
            h.update(f"{rel}\0{self.file(path)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if not self._dirty or self._entries is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self._entries, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        self._dirty = False


# -- rendering ---------------------------------------------------------------------------------
def pbtxt_string(value: str) -> str:
    """Escape a value for use inside a double-quoted protobuf text string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, values: Mapping[str, Any], source: str) -> str:
    """Fill ``{{ name }}`` placeholders; any placeholder without a value is an error."""
    missing = sorted({m.group(1) for m in PLACEHOLDER.finditer(template)} - set(values))
    if missing:
        raise BuildError(f"{source}: no value for placeholder(s) {', '.join(missing)}")
    out = PLACEHOLDER.sub(lambda m: pbtxt_string(str(values[m.group(1)])), template)
    if "{{" in out or "}}" in out:
        line = next(ln for ln in out.splitlines() if "{{" in ln or "}}" in ln)
        raise BuildError(f"{source}: malformed placeholder left after rendering: {line.strip()}")
    return out


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


# -- model descriptions ------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelInputs:
    """Everything that decides one model's build, before it is hashed."""

    name: str
    template_dir: Path
    parameters: dict[str, Any]  # rendered into config.pbtxt
    weights: dict[str, str]  # what -> sha256 (recorded; also part of the key)
    onnx_from: Path | None = None  # a sentence-transformers folder to export into the version

    def key(self, template_digests: Mapping[str, str]) -> str:
        doc = {
            "format": FORMAT_VERSION,
            "name": self.name,
            "templates": dict(sorted(template_digests.items())),
            "parameters": dict(sorted(self.parameters.items())),
            "weights": dict(sorted(self.weights.items())),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ModelBuild:
    name: str
    key: str
    path: Path  # <cache>/local/models/<name>-<key>; the model folder is path/<name>
    built: bool  # False: it was already in the cache
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.path / self.name


def model_inputs(spec: LocalStackSpec, digests: DigestCache) -> list[ModelInputs]:
    """The models this spec serves, with their parameters and weight digests."""
    tdir = templates_root()
    llm = spec.llm
    if not llm.gguf.is_file():
        raise BuildError(
            f"GGUF model file not found: {llm.gguf} (set model.local.gguf to an existing .gguf file)"
        )
    gguf_sha = digests.file(llm.gguf)
    models = [
        ModelInputs(
            name=LLM_MODEL,
            template_dir=tdir / LLM_MODEL,
            parameters={
                "gguf_path": str(llm.gguf.resolve()),
                "gguf_sha256": gguf_sha,
                "n_ctx": llm.context_tokens,
                "n_threads": llm.threads,
                "n_threads_batch": llm.threads,
                "n_batch": llm.n_batch,
                "repeat_penalty": llm.repeat_penalty,
            },
            weights={"gguf": gguf_sha},
        )
    ]
    if spec.embedder is not None:
        emb = spec.embedder
        if not emb.model_path.is_dir():
            raise BuildError(f"embedding model folder not found: {emb.model_path}")
        tree_sha = digests.tree(emb.model_path)
        if emb.runtime not in ("onnxruntime", "sentence-transformers"):
            raise BuildError(f"unknown embedder runtime {emb.runtime!r}")
        onnx = emb.runtime == "onnxruntime"
        models.append(
            ModelInputs(
                name="embedder",
                template_dir=tdir / "embedder",
                parameters={
                    "max_batch_size": emb.max_batch_size,
                    "max_queue_delay_us": emb.max_queue_delay_us,
                    "dimensions": emb.dimensions,
                    "model_path": str(emb.model_path.resolve()),
                    "model_sha256": tree_sha,
                    "n_threads": emb.threads,
                    "encode_batch_size": emb.encode_batch_size,
                    "max_seq_length": emb.max_seq_length,
                    "export": f"onnx-{EXPORT_FORMAT}-opset{OPSET}-torch-{_version('torch')}"
                    if onnx
                    else "none",
                },
                weights={"model": tree_sha},
                onnx_from=emb.model_path.resolve() if onnx else None,
            )
        )
    return models


def _template_files(template_dir: Path) -> list[Path]:
    if not template_dir.is_dir():
        raise BuildError(f"model templates not found: {template_dir}")
    return sorted(
        p for p in template_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def _template_digests(template_dir: Path) -> dict[str, str]:
    return {
        p.relative_to(template_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in _template_files(template_dir)
    }


class LocalRepository:
    """The content-addressed cache of rendered local models."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "local"
        self.models_root = self.root / "models"
        self.digests = DigestCache(self.root / "file-digests.json")

    def keys(self, spec: LocalStackSpec) -> dict[str, str]:
        """name -> key for what ``spec`` would serve; reads files, writes nothing else."""
        try:
            return {
                m.name: m.key(_template_digests(m.template_dir))
                for m in model_inputs(spec, self.digests)
            }
        finally:
            self.digests.save()

    def build(
        self, spec: LocalStackSpec, on_progress: ProgressFn | None = None
    ) -> list[ModelBuild]:
        try:
            return [self._build_one(m, spec, on_progress) for m in model_inputs(spec, self.digests)]
        finally:
            self.digests.save()

    def _build_one(
        self, inputs: ModelInputs, spec: LocalStackSpec, on_progress: ProgressFn | None
    ) -> ModelBuild:
        tdigests = _template_digests(inputs.template_dir)
        key = inputs.key(tdigests)
        final = self.models_root / f"{inputs.name}-{key}"
        manifest_path = final / "manifest.json"
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            return ModelBuild(inputs.name, key, final, False, manifest)
        if on_progress:
            on_progress(f"rendering {inputs.name} ({key})")
        self.models_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{inputs.name}-", dir=self.models_root))
        try:
            model_dir = tmp / inputs.name
            version_dir = model_dir / "1"
            version_dir.mkdir(parents=True)
            values = {**inputs.parameters, "build_key": key}
            for src in _template_files(inputs.template_dir):
                rel = src.relative_to(inputs.template_dir)
                if src.name.endswith(TEMPLATE_SUFFIX):
                    text = render(src.read_text(), values, str(src))
                    dest = model_dir / rel.with_name(src.name[: -len(TEMPLATE_SUFFIX)])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_text(text)
                elif src.suffix == ".py":  # python-backend code goes into the version folder
                    shutil.copyfile(src, version_dir / rel.name)
                else:
                    dest = model_dir / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
            if not (model_dir / "config.pbtxt").is_file():
                raise BuildError(f"{inputs.template_dir}: no config.pbtxt.tmpl")
            export = None
            if inputs.onnx_from is not None:
                if on_progress:
                    on_progress(f"exporting {inputs.name} to ONNX and checking it")
                export = export_embedder(
                    inputs.onnx_from,
                    version_dir / "model.onnx",
                    int(inputs.parameters.get("max_seq_length") or 0),
                    inputs.template_dir.parent,
                    int(inputs.parameters.get("n_threads") or 1),
                )
            manifest = {
                "format": FORMAT_VERSION,
                "model": inputs.name,
                "key": key,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "stack": spec.name,
                "blueprint_hash": spec.blueprint_hash,
                "templates": {"dir": str(inputs.template_dir), "sha256": tdigests},
                "parameters": inputs.parameters,
                "weights": inputs.weights,
            }
            if export is not None:
                manifest["export"] = export
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "manifest.json").is_file():  # not a concurrent identical build
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
                manifest = json.loads((final / "manifest.json").read_text())
                return ModelBuild(inputs.name, key, final, False, manifest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return ModelBuild(inputs.name, key, final, True, manifest)
