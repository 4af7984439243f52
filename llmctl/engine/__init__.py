"""Production engines: TensorRT-LLM build specification, content-addressed cache, Triton repository.

Modules: ``spec`` (what to build, from blueprint + capacity plan), ``cache`` (where built engines
live and how they are verified), ``trtllm`` (the one module that knows the TensorRT-LLM tool chain),
``render`` (the strict Triton model repository), ``job`` (the Kubernetes Job that builds in the
cluster) and ``build`` (the entry point the CLI calls). Nothing here imports tensorrt_llm, torch or
huggingface_hub at import time.
"""

from __future__ import annotations

from llmctl.engine.build import BuildResult, build_job_manifest, build_production, engine_version

__all__ = ["BuildResult", "build_job_manifest", "build_production", "engine_version"]
