"""Gateway overhead at 32 concurrent requests: everything the gateway adds except generation.

Overhead is measured by the gateway itself and returned in every response's ``timings``:
``overhead_ms = total_ms - llm_ms`` (auth, rate limit, body, question embedding + filtered index
search, prompt, audit write with fsync, serialisation), and ``gateway_ms = overhead_ms -
retrieval_ms`` (the gateway's own code, without the embedding call and the vector search).
``total_ms`` runs from the handler's start to the response body being complete (for streams, to
the final event); ``llm_ms`` from the call to Triton to its last token, queueing inside Triton
included. Goal: overhead p50 <= 10 ms.

The gateway runs in a process of its own (as in production), bound to 127.0.0.1, with a real
LanceDB index (built here by the retrieval package) and real JWT auth and audit. Two modes:

- ``--stack`` (real): a private local stack (Triton on CPU, SmolLM2 + MiniLM) is started, or use a
  running one with ``--triton-http`` and ``--triton-grpc``; the gateway is ``python -m
  llmctl.gateway`` with its default retriever (question embeddings by Triton) and LLM client.
- default (simulated generation): the LLM is a simulated stream (``--token-ms`` per token, no
  CPU), so the figure is not dominated by two CPU cores running SmolLM2 for 32 callers at once.
  Question embeddings go where production sends them, to Triton's ``embedder`` with dynamic
  batching (a private stack is started, or ``--triton-grpc`` names a running one);
  ``--embedder inprocess`` embeds inside the gateway process instead, one question per call (32
  threads contending for two cores: it measures that contention, not the gateway).

    PYTHONPATH=. python benchmarks/gateway_overhead.py [--stack] [--requests 320] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

QUESTIONS = (
    "How many weeks of paid parental leave do employees get?",
    "Who approves expenses above five thousand euros?",
    "How long must a password be?",
    "Is multi-factor authentication mandatory for VPN logins?",
)


class SimulatedLLM:
    """Streams ``tokens`` deltas ``token_ms`` apart without using the CPU (benchmark only)."""

    def __init__(self, tokens: int, token_ms: float) -> None:
        self.tokens = tokens
        self.delay = token_ms / 1000.0

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        for i in range(min(self.tokens, max_tokens)):
            await asyncio.sleep(self.delay)
            yield f" tok{i}"

    async def ready(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def _serve(args: argparse.Namespace) -> None:
    """Child process: the gateway with simulated generation and the in-process embedder."""
    import socket

    import uvicorn

    from llmctl.gateway.app import create_app
    from llmctl.gateway.backends import IndexRetriever
    from llmctl.gateway.config import load_config
    from llmctl.retrieval.embedders import InProcessEmbedder, TritonEmbedder
    from llmctl.retrieval.index import ChunkIndex

    config = load_config(args.config)
    if args.embedder == "triton":
        embedder: Any = TritonEmbedder(config.triton_grpc_url)
    else:
        embedder = InProcessEmbedder(threads=args.embed_threads)
    retriever = IndexRetriever(lambda: ChunkIndex.open(config.index_dir), embedder)
    app = create_app(config, retriever=retriever, llm=SimulatedLLM(args.tokens, args.token_ms))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    original = server.startup

    async def startup(sockets: Any = None) -> None:
        await original(sockets=sockets)
        Path(args.ready_file).write_text(json.dumps({"port": port}))

    server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])


@contextlib.contextmanager
def _stack(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.triton_http and args.triton_grpc:
        yield args.triton_http, args.triton_grpc
        return
    from local_common import bench_spec

    from llmctl.targets.local import LocalTarget

    with tempfile.TemporaryDirectory(prefix="llmctl-bench-gw-") as tmp:
        cache = Path(os.environ.get("LLMCTL_CACHE") or Path(tmp) / "cache")
        target = LocalTarget(bench_spec(args.threads), home=Path(tmp) / "home", cache=cache)
        try:
            print("starting a local stack (Triton, SmolLM2, MiniLM) ...", file=sys.stderr)
            target.apply(smoke=False)
            ep = target.endpoints()
            yield ep["triton_http"], ep["triton_grpc"]
        finally:
            target.destroy()


async def _load(
    url: str,
    bearer: str,
    requests: int,
    concurrency: int,
    stream: bool,
    ramp_s: float = 0.0,
) -> list[dict[str, Any]]:
    from llmctl.gateway.client import AsyncGatewayClient

    results: list[dict[str, Any]] = []
    counter = iter(range(requests))
    async with AsyncGatewayClient(
        url, bearer, timeout=300, connect_timeout=300, max_connections=concurrency
    ) as client:

        async def worker(n: int) -> None:
            # Users arrive over ramp_s (Locust's spawn rate), not all in the same millisecond:
            # with equal answer lengths, simultaneous starts stay in lockstep and every question
            # of a round reaches the embedder at once.
            await asyncio.sleep(ramp_s * n / concurrency)
            for i in counter:
                t = time.perf_counter()
                # streamed, the body is the closing event: the same result as a JSON answer
                r = await client.ask(QUESTIONS[i % len(QUESTIONS)], stream=stream)
                wall = (time.perf_counter() - t) * 1e3
                if r.status != 200:
                    results.append({"status": r.status})
                    continue
                results.append(
                    {
                        "status": 200,
                        "client_ms": wall,
                        "outcome": r.body.get("outcome"),
                        **r.body.get("timings", {}),  # none in an error event: not "answered"
                    }
                )

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return results


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if r.get("status") == 200 and r.get("outcome") == "answered"]
    out: dict[str, Any] = {
        "requests": len(results),
        "answered": len(ok),
        "errors": len(results) - len(ok),
    }
    for key in (
        "overhead_ms",
        "gateway_ms",
        "retrieval_ms",
        "llm_ms",
        "ttft_ms",
        "total_ms",
        "client_ms",
    ):
        values = [r[key] for r in ok if key in r]
        out[key] = {
            "p50": round(_percentile(values, 50), 2),
            "p95": round(_percentile(values, 95), 2),
            "mean": round(statistics.fmean(values), 2) if values else None,
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--stack", action="store_true", help="real Triton for embeddings and generation")
    p.add_argument("--triton-http", help="running stack: Triton HTTP URL")
    p.add_argument("--triton-grpc", help="running stack: Triton gRPC address")
    p.add_argument("--threads", type=int, default=2, help="threads per model of a started stack")
    p.add_argument("--requests", type=int, default=320)
    p.add_argument("--warmup", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=16, help="tokens generated per answer")
    p.add_argument("--tokens", type=int, default=16, help="simulated mode: tokens per answer")
    p.add_argument("--token-ms", type=float, default=10.0, help="simulated mode: ms per token")
    p.add_argument(
        "--embedder",
        choices=("triton", "inprocess"),
        default="triton",
        help="simulated mode: question embeddings by Triton (as in production) or in-process",
    )
    p.add_argument("--embed-threads", type=int, default=1, help="--embedder inprocess: threads")
    p.add_argument(
        "--ramp-s", type=float, default=0.0, help="start the workers evenly over this many seconds"
    )
    p.add_argument("--stream", action="store_true", help="use server-sent events")
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _serve(args)
        return 0

    from test_gateway_support import CORPUS, build_index, make_config, token

    from llmctl.gateway.config import LimitsConfig, RateLimitConfig, write_config

    with (
        tempfile.TemporaryDirectory(prefix="llmctl-gw-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        http_url = grpc_url = ""
        if args.stack or args.embedder == "triton":
            http_url, grpc_url = stack.enter_context(_stack(args))
            from llmctl.retrieval.embedders import TritonEmbedder

            embedder: Any = TritonEmbedder(grpc_url)
        else:
            from llmctl.retrieval.embedders import InProcessEmbedder

            embedder = InProcessEmbedder(threads=args.embed_threads)
        index_dir, _ = build_index(work, CORPUS, embedder)
        state = work / "state"
        config = make_config(
            state,
            triton_url=http_url,
            triton_grpc_url=grpc_url,
            index_dir=index_dir,
            rate=RateLimitConfig(requests_per_minute=1e9, burst=10**9),
            limits=LimitsConfig(
                context_tokens=2048,
                max_input_tokens=1500,
                max_output_tokens=args.max_tokens,
                min_score=0.2,
            ),
        )
        cfg_path = write_config(config, state / "gateway.json")
        ready = work / "ready.json"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        if args.stack:
            from llmctl.gateway.component import gateway_argv

            argv = gateway_argv(cfg_path, ready_file=ready)
        else:
            argv = [
                sys.executable,
                __file__,
                "--serve",
                "--config",
                str(cfg_path),
                "--ready-file",
                str(ready),
                "--tokens",
                str(args.tokens),
                "--token-ms",
                str(args.token_ms),
                "--embed-threads",
                str(args.embed_threads),
                "--embedder",
                args.embedder,
            ]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                    raise SystemExit(f"gateway did not start: {err}")
                time.sleep(0.05)
            url = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
            bearer = token(state, "bench", ["hr", "finance", "staff"], ttl_s=7200)
            asyncio.run(_load(url, bearer, args.warmup, args.concurrency, args.stream))
            started = time.perf_counter()
            results = asyncio.run(
                _load(url, bearer, args.requests, args.concurrency, args.stream, args.ramp_s)
            )
            elapsed = time.perf_counter() - started
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
    summary = {
        "mode": "stack" if args.stack else f"simulated-generation, {args.embedder} embeddings",
        "concurrency": args.concurrency,
        "stream": args.stream,
        "throughput_rps": round(len(results) / elapsed, 2),
        **_summary(results),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(json.dumps(summary, indent=2))
        goal = summary["overhead_ms"]["p50"]
        print(
            f"gateway overhead p50 {goal} ms (goal <= 10 ms): {'met' if goal <= 10 else 'NOT met'}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
