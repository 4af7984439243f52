"""``llmctl build --target <kubernetes target>``: the production build, end to end.

Two backends (``engine.backend``): ``pytorch``, the default, builds TensorRT-LLM's PyTorch-backend
model artifact (``llmctl.engine.llmapi``: pinned checkpoint, optional ModelOpt quantisation, the
LLM-API configuration, the tokenizer) and renders Triton's LLM-API model repository
(``llmctl.engine.render_llmapi``); ``tensorrt`` builds a TensorRT engine with trtllm-build and
renders the legacy ensemble, for releases that still have it. Both share the cache, the Job and
the flow below.

``build_production`` derives the build spec from the blueprint and the capacity plan, computes
the engine's key, and then, in this order of preference:

* ``dry_run``: returns the spec and the exact commands, running nothing;
* ``emit_job``: writes the Kubernetes Job that builds the engine in the cluster;
* an engine with that key already in the cache (verified file by file): never rebuilt;
* ``tensorrt_llm`` installed: builds it (via ``EngineCache.ensure``, the one build seam) and
  validates it by generating a few tokens;
* otherwise: a one-line ``BuildError`` naming the two ways forward.

It then renders the strict Triton model repository next to the engine.

``engine_version`` is the same key, computable anywhere without the weights (see ``spec``'s
docstring for how the checkpoint is identified), for the gateway's audit records and the
Kubernetes labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.engine.cache import Builder, EngineCache, EngineEntry
from llmctl.engine.render import (
    EmbedderSettings,
    RenderedRepository,
    RuntimePaths,
    render_repository,
)
from llmctl.engine.spec import BuildSpec, derive_spec, engine_key
from llmctl.engine.trtllm import Step
from llmctl.errors import BuildError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    target: str
    key: str  # the engine version
    spec: Any  # BuildSpec (tensorrt) | llmapi.ArtifactSpec (pytorch)
    steps: tuple[Step, ...]
    dry_run: bool = False
    job_path: Path | None = None
    job: dict[str, Any] | None = field(default=None, repr=False)
    engine: EngineEntry | None = None
    repository: RenderedRepository | None = None

    @property
    def built(self) -> bool:
        return bool(self.engine and self.engine.built)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "engine_version": self.key,
            "spec": self.spec.to_dict(),
            "steps": [
                {"name": s.name, "command": s.shell(), "description": s.description}
                for s in self.steps
            ],
            "dry_run": self.dry_run,
            "job_path": str(self.job_path) if self.job_path else None,
            "engine_dir": str(self.engine.engine_dir) if self.engine else None,
            "built": self.built,
            "repository": str(self.repository.path) if self.repository else None,
        }

    def summary(self) -> list[str]:
        """The lines ``llmctl build --target <kubernetes target>`` prints."""
        spec = self.spec
        if not isinstance(spec, BuildSpec):
            return self._artifact_summary()
        out = [f"engine {self.key} for target {self.target!r}"]
        out.append(
            f"  model     {spec.model_id} ({spec.checkpoint.source}: {spec.checkpoint.revision or spec.checkpoint.ref})"
        )
        out.append(
            f"  gpu       {spec.gpu} ({spec.gpu_arch}), TP {spec.tp} x PP {spec.pp}, TensorRT-LLM {spec.tensorrt_llm}"
        )
        out.append(
            f"  precision {spec.dtype}, quantisation {spec.quantization}, kv cache {spec.kv_cache_dtype or spec.dtype}"
        )
        out.append(
            f"  limits    batch {spec.max_batch_size}, input {spec.max_input_len}, sequence {spec.max_seq_len}, "
            f"tokens/step {spec.max_num_tokens}, beams {spec.max_beam_width}"
        )
        return out + self._rest(spec.notes, "steps (not run):")

    def _rest(self, notes: tuple[str, ...], steps_title: str) -> list[str]:
        """The notes, then the steps (dry run), the Job written, or what the build did."""
        out = [f"  note      {note}" for note in notes]
        if self.dry_run:
            out.append(steps_title)
            for i, step in enumerate(self.steps, 1):
                out.append(f"  {i}. {step.name}: {step.description}")
                out.append(f"     {step.display()}")
            return out
        if self.job_path is not None:
            out.append(f"wrote the build Job to {self.job_path} (kubectl apply -f {self.job_path})")
            return out
        return out + self._outcome()

    def _outcome(self) -> list[str]:
        out: list[str] = []
        state = "built" if self.built else "unchanged (found in the cache)"
        if self.engine is not None:
            what = self.engine.engine_dir if isinstance(self.spec, BuildSpec) else self.engine.path
            out.append(f"engine    {state}: {what}")
        if self.repository is not None:
            out.append(f"repository {self.repository.path}")
        return out

    def _artifact_summary(self) -> list[str]:
        spec = self.spec
        ck = spec.checkpoint
        out = [
            f"model artifact {self.key} for target {self.target!r} (TensorRT-LLM PyTorch backend)"
        ]
        out.append(f"  model     {spec.model_id} ({ck.source}: {ck.revision or ck.ref})")
        out.append(
            f"  gpu       {spec.gpu} ({spec.gpu_arch}), TP {spec.tp} x PP {spec.pp} x EP {spec.ep}"
        )
        release = (
            "the image's (a tag newer than llmctl's table: keyed by the tag)"
            if spec.tensorrt_llm.startswith("image:")
            else spec.tensorrt_llm
        )
        out.append(f"  serving   {spec.triton_image}, TensorRT-LLM {release}")
        quant = spec.quantization if spec.quantization != "none" else "none (checkpoint as is)"
        out.append(f"  precision quantisation {quant}, kv cache {spec.kv_cache_dtype}")
        out.append(
            f"  limits    batch {spec.max_batch_size}, tokens/step {spec.max_num_tokens}, "
            f"sequence {spec.max_seq_len}, kv fraction {spec.kv_cache_free_gpu_memory_fraction}, "
            f"chunked prefill {'on' if spec.enable_chunked_prefill else 'off'}, CUDA graphs "
            + ",".join(map(str, spec.cuda_graph_batch_sizes))
        )
        return out + self._rest(
            spec.notes,
            "steps (not run; no engine build: the PyTorch backend loads the checkpoint):",
        )


def _noop(_: str) -> None:
    pass


def _production_target(bp: Blueprint, target_name: str | None) -> Any:
    target = bp.target(target_name)
    if target.is_local:
        raise BuildError(
            f"target {target.name!r} is local: its build is the local model repository, not a TensorRT-LLM engine"
        )
    return target


def _plan(bp: Blueprint, plan: Any) -> Any:
    if plan is not None:
        return plan
    from llmctl.sizing import plan as size
    from llmctl.sizing.blueprint import request_from_blueprint

    return size(request_from_blueprint(bp))


def build_inputs(bp: Blueprint, spec: BuildSpec, key: str) -> dict[str, Any]:
    """What the engine manifest records as its inputs (everything the key hashes, and context)."""
    return {"spec": spec.to_dict(), "identity": spec.identity(), "blueprint": bp.name, "key": key}


def is_pytorch(bp: Blueprint) -> bool:
    """Whether production serves TensorRT-LLM's PyTorch backend (the default)."""
    return bp.engine.backend != "tensorrt"


def resolve(bp: Blueprint, target_name: str | None = None, plan: Any = None) -> tuple[Any, str]:
    """The build spec (``BuildSpec`` for engines, ``ArtifactSpec`` for the PyTorch backend) and
    its key (no download, no GPU)."""
    _production_target(bp, target_name)
    if is_pytorch(bp):
        from llmctl.engine.llmapi import artifact_key, derive_artifact

        artifact = derive_artifact(bp, _plan(bp, plan))
        return artifact, artifact_key(artifact)
    spec = derive_spec(bp, _plan(bp, plan))
    return spec, engine_key(spec)


def engine_version(bp: Blueprint, target_name: str | None = None, plan: Any = None) -> str:
    """The engine's key, as labels and audit records carry it; needs neither weights nor GPU.

    With ``target_name=None`` the first kubernetes target is used (the key does not depend on
    which one, only on the model, plan and image).
    """
    if target_name is None:
        target_name = next((n for n, t in bp.targets.items() if not t.is_local), None)
        if target_name is None:
            raise BuildError(f"{bp.path}: no kubernetes target, so no production engine")
    return resolve(bp, target_name, plan)[1]


def dry_run_steps(spec: Any, cache: EngineCache, key: str) -> list[Step]:
    from llmctl.engine import trtllm

    out = str(cache.root / f".build-{key}-XXXXXX")
    if not isinstance(spec, BuildSpec):
        from llmctl.engine import llmapi

        return llmapi.steps(spec, out, checkpoint_dir=f"{out}.hf")
    ckpt = "<huggingface cache snapshot>" if spec.checkpoint.source == "hf" else spec.checkpoint.ref
    found: list[Step] = []
    dl = trtllm.download_step(spec, None)
    if dl is not None:
        found.append(dl)
    found += trtllm.steps(spec, ckpt, out + ".work", out)
    found.append(trtllm.validate_step(spec, f"{out}/engine", f"{out}/tokenizer"))
    return found


def runtime_paths(entry: EngineEntry, bp: Blueprint) -> RuntimePaths:
    embedder_dir = None
    if bp.retrieval.enabled:
        from llmctl.local.spec import resolve_embedding_model

        embedder_dir = str(resolve_embedding_model(bp.retrieval.embedding.model, bp.base_dir))
    return RuntimePaths(str(entry.engine_dir), str(entry.tokenizer_dir), embedder_dir)


def build_production(
    bp: Blueprint,
    target_name: str,
    *,
    dry_run: bool = False,
    emit_job: Path | None = None,
    progress: ProgressFn | None = None,
    plan: Any = None,
    cache: EngineCache | None = None,
    builder: Builder | None = None,
) -> BuildResult:
    """Build (or find) the engine for a production target and render its model repository.

    ``builder`` replaces the TensorRT-LLM builder (tests); the cache is where it is injected.
    """
    on_progress = progress or _noop
    cache = cache or EngineCache()
    spec, key = resolve(bp, target_name, plan)
    steps = tuple(dry_run_steps(spec, cache, key))
    if dry_run:
        return BuildResult(target_name, key, spec, steps, dry_run=True)
    if emit_job is not None:
        import yaml

        job = build_job_manifest(bp, target_name, plan=_plan(bp, plan))
        emit_job.parent.mkdir(parents=True, exist_ok=True)
        emit_job.write_text(yaml.safe_dump(job, sort_keys=False, width=1000))
        return BuildResult(target_name, key, spec, steps, job_path=emit_job, job=job)
    if not isinstance(spec, BuildSpec):
        return _build_artifact(bp, target_name, spec, key, steps, cache, builder, on_progress)
    entry = cache.lookup(key)
    if entry is None:
        if builder is None:
            from llmctl.engine import trtllm

            if trtllm.available() is None:
                raise BuildError(
                    f"cannot build engine {key}: tensorrt_llm is not installed here (it needs an NVIDIA GPU); "
                    f"run `llmctl build {bp.path} --target {target_name}` on a GPU machine with TensorRT-LLM "
                    f"{spec.tensorrt_llm}, or `--emit-job job.yaml` to build it in the cluster"
                )
            installed = trtllm.available()
            if not spec.tensorrt_llm.startswith("image:") and installed != spec.tensorrt_llm:
                raise BuildError(
                    f"TensorRT-LLM {installed} is installed but {bp.engine.triton_image} serves with "
                    f"{spec.tensorrt_llm}; engines do not load across releases: install {spec.tensorrt_llm} "
                    "or build with --emit-job in the serving image"
                )
            builder = trtllm.make_builder(spec)
        entry = cache.ensure(key, build_inputs(bp, spec, key), builder, on_progress)
    else:
        on_progress(f"engine {key} found in the cache; not rebuilding")
    repository = render_repository(
        spec,
        key,
        cache.root.parent / "trtllm-repositories",
        runtime_paths(entry, bp),
        kv_fraction=bp.engine.kv_cache_free_gpu_mem_fraction,
        engine_config=read_engine_config(entry),
        embedder=EmbedderSettings(
            dimensions=bp.retrieval.embedding.dimensions,
            encode_batch_size=bp.retrieval.embedding.batch_size,
        )
        if bp.retrieval.enabled
        else None,
    )
    on_progress(f"model repository {repository.path}")
    return BuildResult(target_name, key, spec, steps, engine=entry, repository=repository)


def _embedder_settings(bp: Blueprint) -> EmbedderSettings | None:
    if not bp.retrieval.enabled:
        return None
    return EmbedderSettings(
        dimensions=bp.retrieval.embedding.dimensions,
        encode_batch_size=bp.retrieval.embedding.batch_size,
    )


def artifact_paths(spec: Any, base: str, embedder_dir: str | None) -> Any:
    """Where the LLM-API model finds the artifact under ``base`` (its folder as the server sees
    it): the quantised or copied checkpoint inside it, or the pinned Hugging Face id."""
    from llmctl.engine.render_llmapi import ArtifactPaths

    inside = spec.quantization != "none" or spec.checkpoint.source == "local"
    return ArtifactPaths(
        checkpoint=f"{base}/checkpoint" if inside else spec.checkpoint.ref,
        tokenizer=f"{base}/tokenizer",
        embedder_model_dir=embedder_dir,
    )


def _build_artifact(
    bp: Blueprint,
    target_name: str,
    spec: Any,
    key: str,
    steps: tuple[Step, ...],
    cache: EngineCache,
    builder: Builder | None,
    on_progress: ProgressFn,
) -> BuildResult:
    """The PyTorch backend's build: the artifact in the cache, then its LLM-API repository."""
    from llmctl.engine import llmapi
    from llmctl.engine.render_llmapi import render_llmapi_repository

    entry = cache.lookup(key)
    if entry is None:
        if builder is None:
            llmapi.require_llm_api(
                spec,
                f"run `llmctl build {bp.path} --target {target_name}` on a GPU machine with "
                f"TensorRT-LLM {spec.tensorrt_llm}, or `--emit-job job.yaml` to build it in the "
                "cluster",
            )
            builder = llmapi.make_builder(spec)
        entry = cache.ensure(key, build_inputs(bp, spec, key), builder, on_progress)
    else:
        on_progress(f"artifact {key} found in the cache; not rebuilding")
    embedder_dir = runtime_paths(entry, bp).embedder_model_dir
    repository = render_llmapi_repository(
        spec,
        key,
        cache.root.parent / "trtllm-repositories",
        artifact_paths(spec, str(entry.path), embedder_dir),
        embedder=_embedder_settings(bp),
    )
    on_progress(f"model repository {repository.path}")
    return BuildResult(target_name, key, spec, steps, engine=entry, repository=repository)


def read_engine_config(entry: EngineEntry) -> dict[str, Any]:
    import json

    path = entry.engine_dir / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"{path}: the engine's config.json is unreadable: {exc}") from None


def render_for_model_store(
    bp: Blueprint,
    target_name: str,
    out_root: Path,
    *,
    plan: Any = None,
    engine_config: dict[str, Any] | None = None,
    embedder_model_dir: str | None = None,
) -> RenderedRepository:
    """The model repository as pods see it, with the model store mounted at ``job.STORE_MOUNT``.

    For the kubernetes target: the engine a build Job wrote lives at
    ``<mount>/engines/<engine_version>/{engine,tokenizer}``. Without ``engine_config`` (the engine's
    config.json, when it has been fetched from the store) the values are checked against the spec.
    """
    from llmctl.engine.job import STORE_MOUNT

    spec, key = resolve(bp, target_name, plan)
    base = f"{STORE_MOUNT}/engines/{key}"
    if not isinstance(spec, BuildSpec):
        from llmctl.engine.render_llmapi import render_llmapi_repository

        if bp.retrieval.enabled:
            embedder_model_dir = embedder_model_dir or f"{STORE_MOUNT}/embedder"
        return render_llmapi_repository(
            spec,
            key,
            out_root,
            artifact_paths(spec, base, embedder_model_dir if bp.retrieval.enabled else None),
            embedder=_embedder_settings(bp),
        )
    embedder = None
    if bp.retrieval.enabled:
        embedder_model_dir = embedder_model_dir or f"{STORE_MOUNT}/embedder"
        embedder = EmbedderSettings(
            dimensions=bp.retrieval.embedding.dimensions,
            encode_batch_size=bp.retrieval.embedding.batch_size,
        )
    return render_repository(
        spec,
        key,
        out_root,
        RuntimePaths(f"{base}/engine", f"{base}/tokenizer", embedder_model_dir),
        kv_fraction=bp.engine.kv_cache_free_gpu_mem_fraction,
        engine_config=engine_config,
        embedder=embedder,
    )


def build_job_manifest(bp: Blueprint, target_name: str, plan: Any = None) -> dict[str, Any]:
    """The Kubernetes Job (as a dict) that builds this blueprint's engine into the model store.

    For the kubernetes target: apply it, wait for completion, then serve the repository rendered
    for ``engine_version(bp)``. ``plan`` defaults to the capacity planner's answer.
    """
    from llmctl.engine.job import job_manifest

    spec, key = resolve(bp, target_name, plan)
    if spec.checkpoint.source != "hf":
        raise BuildError(
            f"model.id {bp.model.id!r} is a local folder, which a Job cannot read: use a Hugging Face "
            "id with a pinned revision, or build on a GPU machine that has the folder"
        )
    return job_manifest(bp, target_name, spec, key, build_inputs(bp, spec, key))
