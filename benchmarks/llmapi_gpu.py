"""The production LLM path on one GPU: llmctl's LLM-API repository, tritonserver, the gateway's client.

What it proves, and why each piece is the production one:
- the model repository is rendered by ``llmctl.engine.render_llmapi.render_llmapi_repository``
  (the function ``llmctl build`` uses for ``engine.backend: pytorch``), for a small local Hugging
  Face folder (SmolLM2-135M-Instruct, TinyLlama-1.1B-Chat, ...). Nothing downloads: the folder is
  the checkpoint and the tokenizer, and ``HF_HUB_OFFLINE=1`` is set as in the pods;
- NVIDIA's ``model.py``/``helpers.py`` come from the installed image's LLM-API model folder (the
  pods copy them from ``LLMAPI_CODE_DIR`` at start; here too), so the code matches the release;
- tritonserver listens on 127.0.0.1 only, with the pods' flags;
- requests go through ``llmctl.triton_client.TritonLLM``, the gateway's streaming client, with the
  LLM-API protocol (the whole text so far in each event; ``TextStream`` takes the new suffix).

Reported: TTFT p50/p95 (request sent -> first text), inter-token latency p50/p95 per request
((last - first) / (tokens - 1)), aggregate output tokens/s over the measured wall time, and the
finish reasons. Tokens are counted with the model's tokenizer on the final text when transformers
is importable (the images have it), else as streamed events (one decode step each).

Runs on a machine with one NVIDIA GPU, either where a ``-trtllm-python-py3`` Triton image's
software is installed (inside that container: ``tritonserver`` on PATH, ``tensorrt_llm``
importable, llmctl installed), or on the host with ``--image``: tritonserver then runs in that
image under docker or podman (host network, the model folder mounted read-only at /model, the
repository's code copied from the image's ``LLMAPI_CODE_DIR`` as the pods do) and the client here:

    PYTHONPATH=. python benchmarks/llmapi_gpu.py --model /models/SmolLM2-135M-Instruct \\
        [--image nvcr.io/nvidia/tritonserver:26.10-trtllm-python-py3] \\
        [--requests 64] [--concurrency 8] [--max-tokens 128] [--timeout 600] [--json out.json]

Without a GPU, tritonserver (or a container runtime) or tensorrt_llm it exits 2 with one line
saying which.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from llmctl.triton_client import TritonLLM

LLM_MODEL = "tensorrt_llm"
CONTAINER_MODEL = "/model"  # where --image mounts the model folder
CODE_FILES = ("model.py", "helpers.py")
QUESTIONS = (
    "Explain what a vacation policy is in a few sentences.",
    "Write a short story about a robot learning to paint.",
    "List some tips for writing clear technical documentation.",
    "Why is the sky blue? Explain it to a child.",
    "Describe how a bicycle works.",
    "What should a new employee read on their first day?",
)


class Unavailable(Exception):
    """A prerequisite is missing: printed as one line, exit status 2."""


class Failed(Exception):
    """The run started but did not finish (server died, timeout): one line, exit status 1."""


# -- prerequisites -----------------------------------------------------------------------------
def gpu_names() -> list[str]:
    """The machine's NVIDIA GPUs (``nvidia-smi -L``); empty when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU ")]


def has_tensorrt_llm() -> bool:
    """Whether tensorrt_llm is importable by this interpreter or the system ``python3`` (the one
    Triton's python backend stub runs the LLM-API model with). Found, not imported: importing it
    initialises CUDA and takes tens of seconds."""
    if importlib.util.find_spec("tensorrt_llm") is not None:
        return True
    python3 = shutil.which("python3")
    if python3 is None:
        return False
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorrt_llm') is None)"
    try:
        return subprocess.run([python3, "-c", probe], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def llmapi_code_dir(given: str | None) -> Path:
    """Where NVIDIA's LLM-API model code is: ``--llmapi-code``, ``$LLMCTL_LLMAPI_CODE_DIR``, or
    the images' path that the pods use (``llmctl.stacks.spec.LLMAPI_CODE_DIR``)."""
    from llmctl.stacks.spec import LLMAPI_CODE_DIR

    folder = Path(given or os.environ.get("LLMCTL_LLMAPI_CODE_DIR") or LLMAPI_CODE_DIR)
    missing = [f for f in CODE_FILES if not (folder / f).is_file()]
    if missing:
        raise Unavailable(
            f"no {' / '.join(missing)} in {folder}: TensorRT-LLM's LLM-API model code "
            "(triton_backend/all_models/llmapi/tensorrt_llm/1 of the installed release) is needed; "
            "run inside a -trtllm-python-py3 image or pass --llmapi-code DIR"
        )
    return folder


def check_model(model: Path) -> None:
    if not (model / "config.json").is_file():
        raise Unavailable(
            f"{model} is not a Hugging Face model folder (no config.json); nothing is "
            "downloaded: pass a local copy of e.g. SmolLM2-135M-Instruct"
        )


def preflight(args: argparse.Namespace) -> tuple[list[str], str, Path | None]:
    """GPU, tritonserver, tensorrt_llm, the LLM-API code and the model folder, in that order, so
    the first missing one is the one named. With ``--image`` the container runtime stands in for
    the last three (they are checked inside the image, by the container's script)."""
    gpus = gpu_names()
    if not gpus:
        raise Unavailable("no NVIDIA GPU here (nvidia-smi lists none): this benchmark needs one")
    if args.image:
        runtime = shutil.which(args.runtime)
        if runtime is None:
            raise Unavailable(f"--image needs a container runtime: {args.runtime} is not on PATH")
        check_model(args.model)
        return gpus, runtime, None
    server = args.tritonserver or shutil.which("tritonserver")
    if not server or not Path(server).exists():
        raise Unavailable(
            "tritonserver is not installed (not on PATH): run inside a "
            "nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3 container or pass --tritonserver"
        )
    if not has_tensorrt_llm():
        raise Unavailable(
            "tensorrt_llm is not importable: the LLM-API model needs TensorRT-LLM "
            "(a -trtllm-python-py3 image has it)"
        )
    code = llmapi_code_dir(args.llmapi_code)
    check_model(args.model)
    return gpus, server, code


# -- the model repository ----------------------------------------------------------------------
def folder_digest(folder: Path) -> str:
    """A cheap identity of the checkpoint folder (names, sizes, mtimes) for the artifact key."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(folder)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def max_seq_len(model: Path, cap: int = 4096) -> int:
    config = json.loads((model / "config.json").read_text())
    return min(int(config.get("max_position_embeddings") or cap), cap)


def artifact_spec(args: argparse.Namespace) -> Any:
    """An ``ArtifactSpec`` for the local folder: one GPU, no quantisation, the production
    defaults for everything the capacity plan would otherwise decide. Built from the dataclass's
    own fields, so a field added upstream with a default does not break this script."""
    from llmctl.engine.llmapi import ArtifactSpec, cuda_graph_sizes
    from llmctl.engine.spec import Checkpoint

    batch = max(args.concurrency, 8)
    values: dict[str, Any] = {
        "model_id": args.model.name,
        "checkpoint": Checkpoint("local", str(args.model), tree_sha256=folder_digest(args.model)),
        "quantization": "none",
        "prequantised": None,
        "kv_cache_dtype": "auto",
        "tp": 1,
        "pp": 1,
        "ep": 1,
        "max_batch_size": batch,
        "max_num_tokens": 8192,
        "max_seq_len": max_seq_len(args.model),
        "kv_cache_free_gpu_memory_fraction": args.kv_fraction,
        "enable_chunked_prefill": True,
        "cuda_graph_batch_sizes": cuda_graph_sizes(batch),
        "gpu": "benchmark",
        "gpu_arch": "local",
        "tensorrt_llm": "image:local",
        "triton_image": "local",
    }
    names = {f.name for f in dataclasses.fields(ArtifactSpec)}
    required = {
        f.name
        for f in dataclasses.fields(ArtifactSpec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if unknown := sorted(required - set(values)):
        raise Failed(f"ArtifactSpec now needs {', '.join(unknown)}: update artifact_spec() here")
    return ArtifactSpec(**{k: v for k, v in values.items() if k in names})


def render_llmapi_repository(args: argparse.Namespace, out_root: Path, code: Path | None) -> Path:
    """The production repository (``tensorrt_llm`` only) plus the image's code, as a pod has it
    (``code`` None: the container copies it at start, from inside the image)."""
    from llmctl.engine.render_llmapi import ArtifactPaths
    from llmctl.engine.render_llmapi import render_llmapi_repository as render

    spec = artifact_spec(args)
    model = CONTAINER_MODEL if args.image else str(args.model.resolve())
    key = "bench-" + folder_digest(args.model)[:10]
    try:
        rendered = render(spec, key, out_root, ArtifactPaths(model, model))
    except Exception as exc:  # BuildError from the checks: one line, as for any failure here
        raise Failed(f"rendering the repository: {type(exc).__name__}: {exc}") from exc
    version = rendered.path / LLM_MODEL / "1"
    if code is not None:
        for name in CODE_FILES:
            shutil.copyfile(code / name, version / name)
    return rendered.path


# -- the server --------------------------------------------------------------------------------
@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    runtime: str | None = None  # the container runtime whose container_name() to stop

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def stop(self) -> None:
        if self.runtime is not None and self.process.poll() is None:
            subprocess.run(
                [self.runtime, "stop", "-t", "30", container_name()],
                capture_output=True,
                timeout=60,
            )
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def server_flags(repository: str, port: int) -> list[str]:
    """The pods' flags on 127.0.0.1; gRPC and metrics off (HTTP is what the gateway's client
    speaks)."""
    return [
        f"--model-repository={repository}",
        f"--http-port={port}",
        "--http-address=127.0.0.1",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--exit-timeout-secs=30",
        "--log-info=false",
    ]


def container_command(args: argparse.Namespace, runtime: str, repository: Path) -> list[str]:
    """``docker|podman run`` of the image: the pods' start script in small (code from the image,
    a clear message when it is missing, ``exec tritonserver``), host network, one GPU, the
    shared memory Triton's docs give these images."""
    from llmctl.stacks.spec import LLMAPI_CODE_DIR

    code = shlex.quote(os.environ.get("LLMCTL_LLMAPI_CODE_DIR") or LLMAPI_CODE_DIR)
    repo = f"/work/repository/{LLM_MODEL}/1/"
    script = (
        f"for f in {' '.join(CODE_FILES)}; do [ -f {code}/$f ] || "
        f'{{ echo "llmctl: {code}/$f is not in this image (TensorRT-LLM LLM-API model code)"; '
        f"exit 78; }}; done; cp {' '.join(f'{code}/{f}' for f in CODE_FILES)} {repo} && "
        f"exec tritonserver {shlex.join(server_flags('/work/repository', args.port))}"
    )
    gpu = (
        ["--gpus", "device=0"]
        if Path(runtime).name == "docker"
        else ["--device", "nvidia.com/gpu=0"]
    )
    return [
        runtime,
        "run",
        "--rm",
        "--name",
        container_name(),
        *gpu,
        "--network=host",
        "--shm-size=2g",
        "-e",
        "HF_HUB_OFFLINE=1",
        "-e",
        "TRANSFORMERS_OFFLINE=1",
        "-v",
        f"{args.model.resolve()}:{CONTAINER_MODEL}:ro",
        "-v",
        f"{repository}:/work/repository",
        args.image,
        "sh",
        "-c",
        script,
    ]


def container_name() -> str:
    """This run's container, named by this process so only it is ever stopped."""
    return f"llmctl-llmapi-bench-{os.getpid()}"


def start_server(cmd: list[str], port: int, work: Path) -> Server:
    """The server, in its own process group so every rank it spawns is stopped with it."""
    log = work / "tritonserver.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as fh:
        process = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Server(process, f"http://127.0.0.1:{port}", log)


def wait_ready(server: Server, deadline: float) -> float:
    """Seconds until ``/v2/models/tensorrt_llm/ready`` answers 200 (the pods' readiness)."""
    start = time.monotonic()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise Failed(f"tritonserver exited ({server.process.returncode}): {server.tail()}")
        try:
            if httpx.get(f"{server.url}/v2/models/{LLM_MODEL}/ready", timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise Failed(f"tensorrt_llm was not ready before the timeout: {server.tail()}")


# -- the load ----------------------------------------------------------------------------------
@dataclass
class Sample:
    ttft_s: float
    total_s: float
    text: str
    events: int
    finish: str | None
    tokens: int = 0

    @property
    def itl_s(self) -> float | None:
        if self.tokens < 2:
            return None
        return (self.total_s - self.ttft_s) / (self.tokens - 1)


def prompts(model: Path, n: int) -> list[str]:
    """Chat-formatted questions (the model's own template when transformers can read it)."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
        chat = [
            str(
                tok.apply_chat_template(
                    [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
                )
            )
            for q in QUESTIONS
        ]
    except Exception:
        chat = [f"Question: {q}\nAnswer:" for q in QUESTIONS]
    return [chat[i % len(chat)] for i in range(n)]


async def one_request(client: TritonLLM, prompt: str, max_tokens: int) -> Sample:
    finish: list[str | None] = []
    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for delta in client.stream(prompt, max_tokens=max_tokens, on_finish=finish.append):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(delta)
    total = time.perf_counter() - t0
    return Sample(
        ttft_s=first if first is not None else total,
        total_s=total,
        text="".join(parts),
        events=len(parts),
        finish=finish[0] if finish else None,
    )


async def run_load(url: str, texts: list[str], concurrency: int, max_tokens: int) -> list[Sample]:
    from llmctl.triton_client import TritonLLM

    client = TritonLLM(url, LLM_MODEL, token_timeout_s=120.0)
    gate = asyncio.Semaphore(concurrency)

    async def bounded(text: str) -> Sample:
        async with gate:
            return await one_request(client, text, max_tokens)

    try:
        return list(await asyncio.gather(*(bounded(t) for t in texts)))
    finally:
        await client.aclose()


def count_tokens(model: Path, samples: list[Sample]) -> str:
    """Output tokens per sample: the tokenizer's count of the final text, else streamed events."""
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model), local_files_only=True)
        for s in samples:
            s.tokens = len(tok.encode(s.text, add_special_tokens=False))
        return "tokenizer"
    except Exception:
        for s in samples:
            s.tokens = s.events
        return "streamed events"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(samples: list[Sample], wall_s: float, counted_by: str) -> dict[str, Any]:
    ttft = [s.ttft_s * 1000 for s in samples]
    itl = [s.itl_s * 1000 for s in samples if s.itl_s is not None]
    tokens = sum(s.tokens for s in samples)
    return {
        "requests": len(samples),
        "ttft_ms_p50": pct(ttft, 50),
        "ttft_ms_p95": pct(ttft, 95),
        "itl_ms_p50": pct(itl, 50),
        "itl_ms_p95": pct(itl, 95),
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
        "wall_s": wall_s,
        "tokens_counted_by": counted_by,
        "finish_reasons": dict(Counter(str(s.finish) for s in samples)),
    }


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--model", type=Path, required=True, help="local Hugging Face model folder")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--timeout", type=float, default=600.0, help="whole run, seconds")
    p.add_argument("--port", type=int, default=18000)
    p.add_argument("--kv-fraction", type=float, default=0.5, help="KV cache share of free memory")
    p.add_argument("--tritonserver", help="tritonserver binary (default: from PATH)")
    p.add_argument("--image", help="run tritonserver in this -trtllm-python-py3 image instead")
    p.add_argument("--runtime", default="docker", help="container runtime for --image")
    p.add_argument("--llmapi-code", help="folder with the LLM-API model.py and helpers.py")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--keep", action="store_true", help="keep the rendered repository and log")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    gpus, binary, code = preflight(args)
    work = Path(tempfile.mkdtemp(prefix="llmctl-llmapi-bench-"))
    server: Server | None = None
    try:
        repository = render_llmapi_repository(args, work / "repositories", code)
        if args.image:
            server = start_server(container_command(args, binary, repository), args.port, work)
            server.runtime = binary
        else:
            cmd = [binary, *server_flags(str(repository), args.port)]
            server = start_server(cmd, args.port, work)
        load_s = wait_ready(server, deadline)
        texts = prompts(args.model, args.requests)

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        try:  # one warm-up request, not measured (first-request allocations, graph replay)
            asyncio.run(asyncio.wait_for(run_load(server.url, texts[:1], 1, 8), remaining()))
            t0 = time.perf_counter()
            samples = asyncio.run(
                asyncio.wait_for(
                    run_load(server.url, texts, args.concurrency, args.max_tokens), remaining()
                )
            )
        except TimeoutError as exc:
            raise Failed(f"requests did not finish within --timeout {args.timeout:.0f} s") from exc
        except Exception as exc:  # the client's errors are one line each (BackendUnavailable...)
            raise Failed(f"request failed: {type(exc).__name__}: {exc} | {server.tail(2)}") from exc
        wall = time.perf_counter() - t0
        out = summary(samples, wall, count_tokens(args.model, samples))
        out |= {"gpu": gpus[0], "model": str(args.model), "load_s": load_s}
        out |= {"concurrency": args.concurrency, "max_tokens": args.max_tokens}
        return out
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(r: dict[str, Any]) -> str:
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(r["finish_reasons"].items()))
    return "\n".join(
        [
            f"{r['gpu']} | {r['model']} | loaded in {r['load_s']:.0f} s",
            f"{r['requests']} requests, concurrency {r['concurrency']}, max_tokens "
            f"{r['max_tokens']}, {r['wall_s']:.1f} s",
            f"TTFT p50 {r['ttft_ms_p50']:.1f} ms, p95 {r['ttft_ms_p95']:.1f} ms",
            f"inter-token p50 {r['itl_ms_p50']:.2f} ms, p95 {r['itl_ms_p95']:.2f} ms",
            f"output {r['output_tokens']} tokens ({r['tokens_counted_by']}), "
            f"{r['output_tokens_per_s']:.0f} tokens/s",
            f"finish reasons: {reasons}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except Unavailable as exc:
        print(f"llmapi_gpu: skipped: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"llmapi_gpu: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llmapi_gpu: interrupted", file=sys.stderr)
        return 130
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
