"""The tritonserver seam: found through the package, loopback only, backend dir with the right stub."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from llmctl.errors import StackError
from llmctl.local import tritonserver


def _fake_install(tmp_path: Path) -> tritonserver.TritonInstall:
    root = tmp_path / "tritonserver"
    (root / "bin").mkdir(parents=True)
    binary = root / "bin" / "tritonserver"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    py = root / "backends" / "python"
    py.mkdir(parents=True)
    (py / "libtriton_python.so").write_text("")
    (py / tritonserver.STUB_NAME).write_text("wrong stub")
    stub_dir = root / "python_backend_stubs" / tritonserver.python_tag()
    stub_dir.mkdir(parents=True)
    (stub_dir / tritonserver.STUB_NAME).write_text("right stub")
    libs = tmp_path / "libs"
    libs.mkdir()
    return tritonserver.TritonInstall(
        binary, root / "backends", (libs,), root / "python_backend_stubs", "test"
    )


def test_backend_dir_links_the_stub_for_this_interpreter(tmp_path):
    install = _fake_install(tmp_path)
    dest = tritonserver.prepare_backend_dir(install, tmp_path / "state" / "backends")
    stub = dest / "python" / tritonserver.STUB_NAME
    assert stub.is_symlink() and stub.read_text() == "right stub"
    assert (dest / "python" / "libtriton_python.so").is_symlink()
    # again: replaced atomically, nothing left over
    tritonserver.prepare_backend_dir(install, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["backends"]


def test_missing_stub_names_the_interpreters_available(tmp_path):
    install = _fake_install(tmp_path)
    (install.stubs_dir / tritonserver.python_tag() / tritonserver.STUB_NAME).unlink()
    (install.stubs_dir / tritonserver.python_tag()).rmdir()
    (install.stubs_dir / "3.99").mkdir()
    with pytest.raises(StackError, match=r"no python-backend stub for Python .*3\.99"):
        tritonserver.prepare_backend_dir(install, tmp_path / "backends")


def test_argv_binds_loopback_and_explicit_control(tmp_path):
    install = _fake_install(tmp_path)
    argv = tritonserver.build_argv(
        install,
        model_repository=tmp_path / "models",
        backend_dir=tmp_path / "backends",
        ports=tritonserver.TritonPorts(8000, 8001, 8002),
    )
    joined = " ".join(argv)
    assert "0.0.0.0" not in joined
    for flag in (
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        "--model-control-mode=explicit",
    ):
        assert flag in argv
    assert any(a.startswith("--exit-timeout-secs=") for a in argv)


def test_env_puts_bundled_libs_and_this_interpreters_packages_first(tmp_path):
    install = _fake_install(tmp_path)
    env = tritonserver.build_env(
        install, base={"LD_LIBRARY_PATH": "/x", "PYTHONPATH": "/y", "PATH": "/venv/bin:/usr/bin"}
    )
    own = tritonserver.interpreter_libdir()
    expected = [str(own)] if own is not None else []
    assert env["LD_LIBRARY_PATH"].split(":") == [*expected, str(install.lib_dirs[0]), "/x"]
    assert env["PYTHONPATH"].endswith(":/y")
    # the stub's embedded Python takes its stdlib from the first python3 on PATH: this one
    assert env["PATH"].split(":") == [str(Path(sys.executable).parent), "/venv/bin", "/usr/bin"]
    assert env["HF_HUB_OFFLINE"] == "1"


def test_override_must_be_executable(tmp_path, monkeypatch):
    monkeypatch.setenv(tritonserver.ENV_BINARY, str(tmp_path / "missing"))
    with pytest.raises(StackError, match="not an executable"):
        tritonserver.find_triton()


@pytest.mark.skipif(sys.platform != "linux", reason="the wheel's tritonserver is Linux x86-64")
def test_finds_the_wheel_binary(monkeypatch):
    if importlib.util.find_spec("pytriton") is None:
        pytest.skip(reason="nvidia-pytriton is not installed")
    monkeypatch.delenv(tritonserver.ENV_BINARY, raising=False)
    install = tritonserver.find_triton()
    assert install.binary.is_file()
    assert (install.stubs_dir / tritonserver.python_tag() / tritonserver.STUB_NAME).is_file()
    assert any(p.name == "nvidia_pytriton.libs" for p in install.lib_dirs)
