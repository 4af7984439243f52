"""Fixtures for tests that start a real local stack (Triton with both models).

One stack per test session: starting Triton and loading llama.cpp and sentence-transformers costs
seconds on two cores, so every ``@pytest.mark.stack`` test that only reads shares it. Tests that
need a stack of their own (failures, down) build small LLM-only specs with ``llm_only_spec``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmctl.local.spec import (
    EmbedderSpec,
    LlmSpec,
    LocalStackSpec,
    default_embedding_model,
    default_gguf,
)
from llmctl.targets.local import ApplyResult, LocalTarget


@dataclass
class StackDirs:
    home: Path
    cache: Path


@pytest.fixture(scope="session")
def stack_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackDirs]:
    """A private LLMCTL_HOME and LLMCTL_CACHE for the whole session."""
    root = tmp_path_factory.mktemp("llmctl-stack")
    dirs = StackDirs(home=root / "home", cache=root / "cache")
    saved = {k: os.environ.get(k) for k in ("LLMCTL_HOME", "LLMCTL_CACHE", "PATH")}
    os.environ["LLMCTL_HOME"] = str(dirs.home)
    os.environ["LLMCTL_CACHE"] = str(dirs.cache)
    # As a user with the venv activated runs llmctl: its bin first on PATH. The python-backend
    # stub once took its stdlib from there while linking another libpython (an ImportError on
    # _ssl), which a plain PATH hid; see tritonserver.build_env.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved["PATH"] or ""])
    yield dirs
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def full_spec(name: str = "test-stack") -> LocalStackSpec:
    threads = min(2, os.cpu_count() or 1)
    return LocalStackSpec(
        name=name,
        llm=LlmSpec(gguf=default_gguf(), context_tokens=1024, threads=threads),
        embedder=EmbedderSpec(model_path=default_embedding_model(), threads=threads),
        startup_timeout_s=300.0,
        # tests here SIGSTOP Triton and expect it back; tests/test_local_watchdog.py runs one
        watchdog=False,
    )


def llm_only_spec(name: str, **changes: object) -> LocalStackSpec:
    spec = LocalStackSpec(
        name=name,
        llm=LlmSpec(gguf=default_gguf(), context_tokens=512, threads=min(2, os.cpu_count() or 1)),
        embedder=None,
        startup_timeout_s=300.0,
    )
    return spec.with_changes(**changes)


def make_target(spec: LocalStackSpec, dirs: StackDirs) -> LocalTarget:
    return LocalTarget(spec, home=dirs.home, cache=dirs.cache)


@pytest.fixture(scope="session")
def local_stack(stack_dirs: StackDirs) -> Iterator[tuple[LocalTarget, ApplyResult]]:
    """A running stack with both models; torn down (and checked gone) at the end of the session."""
    target = make_target(full_spec(), stack_dirs)
    try:
        result = target.apply()
        yield target, result
    finally:
        target.destroy()
