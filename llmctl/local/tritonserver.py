"""The one module that knows the ``tritonserver`` binary: where it is, what it needs, how it is run.

The local target serves models with the real Triton Inference Server shipped inside the
``nvidia-pytriton`` wheel (or a system Triton named by ``LLMCTL_TRITONSERVER``). Everything that
depends on that binary's layout lives here, so there is one seam to read and one place to fix when
the wheel changes:

- the binary is found through the installed package (importlib), never a hard-coded path;
- its bundled shared libraries (``nvidia_pytriton.libs``) go on ``LD_LIBRARY_PATH``;
- the wheel ships python-backend stubs for several interpreters; the backend directory we hand to
  Triton is assembled under the stack's state directory with symlinks, choosing the stub that
  matches the running interpreter, so site-packages is never written to;
- the stub imports whatever the tritonserver process's ``PYTHONPATH`` names, so we give it this
  interpreter's site-packages (or ``LLMCTL_TRITON_PYTHONPATH`` for a separate model environment).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmctl.errors import StackError

ENV_BINARY = "LLMCTL_TRITONSERVER"
ENV_PYTHONPATH = "LLMCTL_TRITON_PYTHONPATH"
STUB_NAME = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    """Where a usable tritonserver and its python backend live."""

    binary: Path
    backends_dir: Path
    lib_dirs: tuple[Path, ...]
    stubs_dir: Path | None  # per-interpreter stubs (wheel layout); None for a system Triton
    source: str  # "nvidia-pytriton" or "LLMCTL_TRITONSERVER"


@dataclass(frozen=True)
class TritonPorts:
    """The three listeners; always bound to 127.0.0.1."""

    http: int
    grpc: int
    metrics: int

    def as_dict(self) -> dict[str, int]:
        return {"http": self.http, "grpc": self.grpc, "metrics": self.metrics}


def find_triton() -> TritonInstall:
    """Locate tritonserver: ``LLMCTL_TRITONSERVER`` first, then the nvidia-pytriton wheel."""
    override = os.environ.get(ENV_BINARY)
    if override:
        binary = Path(override).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise StackError(f"{ENV_BINARY}={override} is not an executable file")
        # A system install keeps backends next to bin/ (/opt/tritonserver/{bin,backends}).
        backends = binary.resolve().parent.parent / "backends"
        return TritonInstall(binary, backends, (), None, ENV_BINARY)

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "tritonserver not found: install the local extra (pip install 'llmctl[local]', which "
            f"brings nvidia-pytriton) or set {ENV_BINARY} to a tritonserver binary"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    root = package_dir / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        raise StackError(f"the nvidia-pytriton package at {package_dir} has no {binary.name}")
    if not os.access(binary, os.X_OK):
        raise StackError(f"{binary} is not executable; reinstall nvidia-pytriton with pip")
    # auditwheel puts the bundled libraries next to the package: <site-packages>/<dist>.libs
    lib_dirs = tuple(
        p for p in (package_dir.parent / "nvidia_pytriton.libs", root / "lib") if p.is_dir()
    )
    return TritonInstall(
        binary=binary,
        backends_dir=root / "backends",
        lib_dirs=lib_dirs,
        stubs_dir=root / "python_backend_stubs",
        source="nvidia-pytriton",
    )


def python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def prepare_backend_dir(install: TritonInstall, dest: Path) -> Path:
    """Assemble ``dest/python`` (links to the wheel's python backend plus the matching stub).

    Built in a temporary folder and renamed into place, so a concurrent reader never sees half a
    backend; rebuilt every time because it is only a handful of symlinks.
    """
    source = install.backends_dir / "python"
    if not source.is_dir():
        raise StackError(f"no python backend at {source}")
    stub: Path | None = None
    if install.stubs_dir is not None:
        stub = install.stubs_dir / python_tag() / STUB_NAME
        if not stub.is_file():
            have = (
                sorted(p.name for p in install.stubs_dir.iterdir())
                if install.stubs_dir.is_dir()
                else []
            )
            raise StackError(
                f"the Triton wheel has no python-backend stub for Python {python_tag()} "
                f"(it has: {', '.join(have) or 'none'}); run llmctl with one of those interpreters"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".backends-", dir=dest.parent))
    python_dir = tmp / "python"
    python_dir.mkdir()
    for entry in source.iterdir():
        if entry.name == STUB_NAME and stub is not None:
            continue
        (python_dir / entry.name).symlink_to(entry.resolve())
    if stub is not None:
        (python_dir / STUB_NAME).symlink_to(stub.resolve())
    # other backends (if any) stay available under their own names
    for entry in install.backends_dir.iterdir():
        if entry.name != "python":
            (tmp / entry.name).symlink_to(entry.resolve())
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def stub_pythonpath() -> str:
    """What the python-backend stub imports: this interpreter's packages unless overridden."""
    override = os.environ.get(ENV_PYTHONPATH)
    if override:
        return override
    paths: list[str] = []
    for p in [*site.getsitepackages(), site.getusersitepackages()]:
        if p and Path(p).is_dir() and p not in paths:
            paths.append(p)
    return os.pathsep.join(paths)


def interpreter_libdir() -> Path | None:
    """The directory holding this interpreter's shared libpython, if it was built with one."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and (Path(libdir) / soname).is_file():
        return Path(libdir)
    return None


def build_env(
    install: TritonInstall,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The tritonserver process environment (the stubs inherit it)."""
    env = dict(os.environ if base is None else base)
    lib_path = [str(p) for p in install.lib_dirs]
    # The stub embeds libpython and finds its standard library from the first ``python3`` on
    # PATH (a venv's pyvenv.cfg points at its base Python). If the linker picked the system
    # libpython while PATH led to another Python's stdlib, extension modules fail to import
    # (``_ssl ... undefined symbol``). So the stub runs *this* interpreter: its libpython first on
    # the library path, its bin directory first on PATH.
    own_lib = interpreter_libdir()
    if own_lib is not None:
        lib_path.insert(0, str(own_lib))
    env["PATH"] = os.pathsep.join(
        p for p in [str(Path(sys.executable).parent), env.get("PATH", "")] if p
    )
    if env.get("LD_LIBRARY_PATH"):
        lib_path.append(env["LD_LIBRARY_PATH"])
    if lib_path:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_path)
    pythonpath = [stub_pythonpath()]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(p for p in pythonpath if p)
    # The wheel's stub runs an embedded interpreter that ignores PYTHONPATH (it starts with the
    # system Python's default sys.path); our model.py files prepend this variable to sys.path.
    env["LLMCTL_STUB_PYTHONPATH"] = env["PYTHONPATH"]
    # Nothing may download at run time, and tokenizers must not fork thread pools under the stub.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if extra:
        env.update(extra)
    return env


def build_argv(
    install: TritonInstall,
    *,
    model_repository: Path,
    backend_dir: Path,
    ports: TritonPorts,
    load_models: Sequence[str] = (),
    exit_timeout_s: int = 3,
    log_verbose: int = 0,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line: loopback only, explicit model control, a short exit timeout.

    Explicit model control lets ``up`` load, reload and unload models without a restart; the short
    exit timeout keeps ``down`` from holding the ports for Triton's default 30 s.
    """
    argv = [
        str(install.binary),
        f"--model-repository={model_repository}",
        f"--backend-directory={backend_dir}",
        "--model-control-mode=explicit",
        "--strict-readiness=true",
        "--http-address=127.0.0.1",
        f"--http-port={ports.http}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports.grpc}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={ports.metrics}",
        f"--exit-timeout-secs={exit_timeout_s}",
        f"--log-verbose={log_verbose}",
    ]
    argv += [f"--load-model={name}" for name in load_models]
    argv += list(extra_args)
    return argv
