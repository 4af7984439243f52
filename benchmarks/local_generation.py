"""Generation tokens/s: Triton streaming vs llama-cpp-python in-process, same GGUF and settings.

Same prompts (chat-formatted), same settings (greedy, same max_tokens, same threads), so the ratio
is the cost of serving through Triton. Goal: Triton >= 90% of in-process.

How it is measured, and why:
- Triton is reached the way the gateway reaches it: HTTP ``generate_stream`` (server-sent
  events), read with httpx. ``--protocol grpc`` uses tritonclient's gRPC stream instead.
- The machines are shared and drift by +-10% from one minute to the next, so the two sides are
  measured in pairs: each prompt runs through Triton and in process back to back (which goes
  first alternates), and the figure is the median of the per-pair ratios.
- Greedy decoding gives both sides the same text, so tokens are counted once, exactly, from the
  in-process run (llama.cpp's own count), and a pair's ratio is in-process time / Triton time.
  Triton may coalesce several tokens into one streamed message, so its messages are not counted.

    PYTHONPATH=. python benchmarks/local_generation.py [--max-tokens 128] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator

import httpx
from local_common import bench_spec, common_args, running_stack

from llmctl import triton_client
from llmctl.local.prompt import format_chat

QUESTIONS = [
    "Explain what a vacation policy is in a few sentences.",
    "Write a short story about a robot learning to paint.",
    "List some tips for writing clear technical documentation.",
    "Why is the sky blue? Explain it to a child.",
    "Describe how a bicycle works.",
]

Stream = Callable[[str, int], Iterator[str]]


def http_stream(http_url: str) -> Stream:
    client = httpx.Client(base_url=http_url, timeout=120.0)

    def stream(prompt: str, max_tokens: int) -> Iterator[str]:
        yield from triton_client.http_stream_generate(client, prompt, max_tokens)

    return stream


def grpc_stream(grpc_url: str) -> Stream:
    def stream(prompt: str, max_tokens: int) -> Iterator[str]:
        yield from triton_client.stream_generate(
            grpc_url, prompt, max_tokens=max_tokens, temperature=0.0
        )

    return stream


def timed(deltas: Iterator[str]) -> tuple[str, float, float]:
    """(text, seconds, seconds to the first non-empty delta)."""
    start = time.perf_counter()
    first, parts = None, []
    for delta in deltas:
        if first is None:
            first = time.perf_counter() - start
        parts.append(delta)
    return "".join(parts), time.perf_counter() - start, first or 0.0


def inprocess_stream(llm) -> tuple[Stream, list[int]]:
    """A Stream over llama-cpp-python in this process; ``counts`` gets each run's token count."""
    counts: list[int] = []

    def stream(prompt: str, max_tokens: int) -> Iterator[str]:
        n = 0
        for chunk in llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=0.0,
            top_k=1,
            top_p=1.0,
            repeat_penalty=1.0,
            stream=True,
        ):
            n += 1
            text = chunk["choices"][0]["text"]
            if text:
                yield text
        counts.append(n)

    return stream, counts


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--http", default=None, help="a running stack's Triton HTTP address")
    args = parser.parse_args()
    spec = bench_spec(args.threads, args.gguf, embedder=False)
    prompts = [format_chat([{"role": "user", "content": q}]) for q in QUESTIONS]

    from llama_cpp import Llama

    llm = Llama(
        model_path=str(spec.llm.gguf),
        n_ctx=spec.llm.context_tokens,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=spec.llm.n_batch,
        verbose=False,
    )
    local, counts = inprocess_stream(llm)
    pairs: list[tuple[float, float]] = []  # (triton seconds, in-process seconds)
    ttfts: tuple[list[float], list[float]] = ([], [])
    tokens, mismatched = 0, 0
    given, endpoint = (args.http, "triton_http") if args.protocol == "http" else (args.grpc, None)
    with running_stack(spec, given, endpoint or "triton_grpc") as url:
        served = http_stream(url) if args.protocol == "http" else grpc_stream(url)
        timed(served(prompts[0], 8))  # warm-up both sides
        timed(local(prompts[0], 8))
        for r in range(args.rounds):
            for i, prompt in enumerate(prompts):
                order = (served, local) if (r + i) % 2 == 0 else (local, served)
                results = {id(side): timed(side(prompt, args.max_tokens)) for side in order}
                (t_text, t_s, t_first), (i_text, i_s, i_first) = (
                    results[id(served)],
                    results[id(local)],
                )
                mismatched += t_text != i_text
                tokens += counts[-1]
                pairs.append((t_s, i_s))
                ttfts[0].append(t_first)
                ttfts[1].append(i_first)

    ratios = [i_s / t_s for t_s, i_s in pairs]
    t_total, i_total = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    print(
        f"model: {spec.llm.gguf.name}, threads {args.threads}, max_tokens {args.max_tokens}, "
        f"{len(prompts)} prompts x {args.rounds} rounds, paired; Triton over {args.protocol}"
    )
    for label, total, firsts in (
        ("triton streaming", t_total, ttfts[0]),
        ("in-process      ", i_total, ttfts[1]),
    ):
        print(
            f"{label}: {tokens / total:7.1f} tokens/s   "
            f"median TTFT {statistics.median(firsts) * 1000:6.1f} ms   ({tokens} tokens)"
        )
    quartiles = statistics.quantiles(ratios, n=4)
    print(
        f"ratio triton/in-process: median {statistics.median(ratios):.1%} of {len(ratios)} pairs "
        f"(quartiles {quartiles[0]:.0%}-{quartiles[2]:.0%}; totals {i_total / t_total:.1%}) "
        f"(goal >= 90%)"
    )
    if mismatched:
        print(f"warning: {mismatched} pairs produced different text; their token counts differ")


if __name__ == "__main__":
    main()
