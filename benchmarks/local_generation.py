"""Generation tokens/s: Triton streaming (gRPC, decoupled ensemble) vs llama-cpp-python in-process.

Same GGUF, same prompts (chat-formatted), same settings (greedy, same max_tokens, same threads), so
the ratio is the cost of serving through Triton. Goal: Triton >= 90% of in-process.

    PYTHONPATH=. python benchmarks/local_generation.py [--max-tokens 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

from local_common import bench_spec, common_args, running_stack

from llmctl.local import triton_client
from llmctl.local.prompt import format_chat

QUESTIONS = [
    "Explain what a vacation policy is in a few sentences.",
    "Write a short story about a robot learning to paint.",
    "List some tips for writing clear technical documentation.",
    "Why is the sky blue? Explain it to a child.",
    "Describe how a bicycle works.",
]


def run_triton(grpc: str, prompts: list[str], max_tokens: int) -> tuple[int, float, list[float]]:
    tokens, seconds, ttfts = 0, 0.0, []
    for prompt in prompts:
        start = time.perf_counter()
        first = None
        for _ in triton_client.stream_generate(
            grpc, prompt, max_tokens=max_tokens, temperature=0.0
        ):
            if first is None:
                first = time.perf_counter() - start
            tokens += 1
        seconds += time.perf_counter() - start
        ttfts.append(first or 0.0)
    return tokens, seconds, ttfts


def run_inprocess(llm, prompts: list[str], max_tokens: int) -> tuple[int, float, list[float]]:
    tokens, seconds, ttfts = 0, 0.0, []
    for prompt in prompts:
        start = time.perf_counter()
        first = None
        for chunk in llm.create_completion(
            prompt,
            max_tokens=max_tokens,
            temperature=0.0,
            top_k=1,
            top_p=1.0,
            repeat_penalty=1.0,
            stream=True,
        ):
            if not chunk["choices"][0]["text"]:
                continue
            if first is None:
                first = time.perf_counter() - start
            tokens += 1
        seconds += time.perf_counter() - start
        ttfts.append(first or 0.0)
    return tokens, seconds, ttfts


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
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
    # Interleaved rounds: the shared machines drift by +-10% between minutes, so the two sides
    # are measured alternately and compared round by round.
    t_runs, i_runs = [], []
    with running_stack(spec, args.grpc) as grpc:
        run_triton(grpc, prompts[:1], 8)  # warm-up
        run_inprocess(llm, prompts[:1], 8)
        for _ in range(args.rounds):
            t_runs.append(run_triton(grpc, prompts, args.max_tokens))
            i_runs.append(run_inprocess(llm, prompts, args.max_tokens))

    def rates(runs):
        return [tok / sec for tok, sec, _ in runs]

    def ttft(runs):
        return statistics.median(t for _, _, ts in runs for t in ts) * 1000

    ratios = [t / i for t, i in zip(rates(t_runs), rates(i_runs), strict=True)]
    print(
        f"model: {spec.llm.gguf.name}, threads {args.threads}, max_tokens {args.max_tokens}, "
        f"{len(prompts)} prompts x {args.rounds} interleaved rounds"
    )
    print(
        f"triton streaming : median {statistics.median(rates(t_runs)):7.1f} tokens/s   "
        f"median TTFT {ttft(t_runs):6.1f} ms   ({t_runs[-1][0]} tokens)"
    )
    print(
        f"in-process       : median {statistics.median(rates(i_runs)):7.1f} tokens/s   "
        f"median TTFT {ttft(i_runs):6.1f} ms   ({i_runs[-1][0]} tokens)"
    )
    print(
        f"ratio triton/in-process: median {statistics.median(ratios):.1%} "
        f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)}) (goal >= 90%)"
    )


if __name__ == "__main__":
    main()
