"""The built wheel works on its own: installed into a new virtual environment outside the checkout,
run from an empty folder, it takes a new user's blueprint through every verb.

This is what a user does after ``pip install llmctl[local,gates]``: ``init``, point the source at
their own Markdown, rename the local target (``dev`` here, so state must follow the target's name),
then ``check``, ``up``, ``ingest``, ``ask``, ``status``, ``verify`` and ``down``. Nothing from the
repository is on the path: no ``PYTHONPATH``, the working directory is empty, and the test checks
that ``llmctl`` is imported from the new environment and that its assets came with it.

The install resolves every dependency like a user's would (pip's cache and the local torch
wheel keep it offline-fast); llama-cpp-python comes from the wheel ``make`` built into ``.whl/``,
when it is there, instead of being compiled again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LLAMA_WHEELS = ROOT / ".whl" / "llama-cpp-avx2"
GENERATED = (".git", ".venv", ".whl", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
GENERATED += (".hypothesis", ".llmctl", ".llmctl-verify", "reports")

pytestmark = pytest.mark.stack

DOCS = {
    "vacation.md": (
        "# Vacation policy\n\n"
        "Every employee receives 27 days of paid vacation per calendar year. Up to five unused "
        "days can be carried over into the next year; the rest expire on 31 March.\n"
    ),
    "expenses.md": (
        "# Travel expenses\n\n"
        "Hotel costs are reimbursed up to 180 euros per night. Submit receipts within 30 days "
        "of the trip through the expenses portal.\n"
    ),
}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtual environment with the freshly built wheel and its extras installed (about
    3 GB: removed again when the module's tests are done)."""
    base = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if LLAMA_WHEELS.is_dir():  # added to the machine's own find-links, which hold torch's CPU build
        links = [os.environ.get("PIP_FIND_LINKS", ""), str(LLAMA_WHEELS)]
        env["PIP_FIND_LINKS"] = " ".join(link for link in links if link)
    # Built from a copy without the checkout's generated folders: setuptools reuses build/lib,
    # where a module deleted from the source would live on and hide a packaging mistake.
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*GENERATED))
    dist = base / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), str(src)],
        base,
        env,
    )
    (wheel,) = dist.glob("llmctl-*.whl")
    interpreter = getattr(sys, "_base_executable", sys.executable)
    _run([interpreter, "-m", "venv", str(base / "venv")], base, env)
    python = base / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[local,gates]"], base, env, 1800)
    yield base / "venv"
    shutil.rmtree(base / "venv", ignore_errors=True)


def test_the_wheel_carries_its_assets_and_no_top_level_stacks(venv: Path, tmp_path: Path) -> None:
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.util, json, llmctl, llmctl.stacks.spec;"
        "from llmctl.assets import asset_dir;"
        "print(json.dumps({'llmctl': llmctl.__file__,"
        " 'stacks': importlib.util.find_spec('stacks') is not None,"
        " 'assets': {n: str(asset_dir(n)) for n in ('engines', 'loadtests', 'schemas')}}))"
    )
    out = json.loads(_run([python, "-c", probe], tmp_path, _user_env(venv, tmp_path)))
    site = str(venv / "lib")
    assert out["llmctl"].startswith(site)
    assert out["stacks"] is False
    for name, folder in out["assets"].items():
        assert folder.startswith(site) and "_assets" in folder, name
    assert (Path(out["assets"]["engines"]) / "local" / "tensorrt_llm" / "model.py").is_file()


def _user_env(venv: Path, cache: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "LLMCTL_"))
    }
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["LLMCTL_CACHE"] = str(cache / "llmctl-cache")
    return env


def test_a_new_user_goes_from_init_to_down_on_a_target_named_dev(
    venv: Path, tmp_path: Path
) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    env = _user_env(venv, tmp_path)
    llmctl = str(venv / "bin" / "llmctl")

    _run([llmctl, "init", "handbook"], work, env)
    docs = tmp_path / "our-docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    path = work / "handbook.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["retrieval"]["sources"][0]["path"] = str(docs)
    doc["targets"]["dev"] = doc["targets"].pop("local")
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    bp = str(path)

    _run([llmctl, "check", bp], work, env)
    _run([llmctl, "up", bp, "--target", "dev", "-y"], work, env)
    try:
        state = work / ".llmctl" / "handbook" / "dev"
        assert (state / "components").is_dir() and not (
            work / ".llmctl" / "handbook" / "local"
        ).exists()
        ingest = json.loads(
            _run([llmctl, "ingest", bp, "--target", "dev", "-o", "json"], work, env)
        )
        assert ingest["documents"] == 2 and ingest["ok"]
        answer = json.loads(
            _run(
                [llmctl, "ask", bp, "How many vacation days do employees get?"]
                + ["--target", "dev", "--as", "alice", "--groups", "all-employees", "-o", "json"],
                work,
                env,
            )
        )
        assert answer["citations"], answer
        assert any("vacation" in str(c.get("path", "")) for c in answer["citations"])
        status = json.loads(
            _run([llmctl, "status", bp, "--target", "dev", "-o", "json"], work, env)
        )
        assert status["state"] == "running" and status["target"] == "dev"
        # a relative report folder, as people type it (the load runner runs in another folder)
        _run([llmctl, "verify", bp, "--target", "dev", "--report", "report"], work, env, 1200)
        assert json.loads((work / "report" / "verify.json").read_text())["ok"] is True
    finally:
        down = subprocess.run(
            [llmctl, "down", bp, "--target", "dev"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
    assert down.returncode == 0, down.stderr
    assert not list((work / ".llmctl" / "handbook" / "dev" / "components").glob("*.json"))
