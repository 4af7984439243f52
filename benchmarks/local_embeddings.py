"""Embedding throughput: Triton (dynamic batching, concurrent clients) vs the same model in-process.

Same model, texts and threads. Clients send small requests concurrently so Triton's dynamic
batcher has something to gather. Triton's embedder runs the sentence-transformers model on ONNX
Runtime (exported by ``llmctl build``), so the goal's baseline is that same code in this process
(``OnnxEmbedder``): the ratio is the cost of serving. sentence-transformers on PyTorch in process
is printed too, as the reference the export replaced. Goal: Triton >= 90% of in-process.

    PYTHONPATH=. python benchmarks/local_embeddings.py [--texts 512] [--per-request 8] [--clients 16]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from local_common import bench_spec, common_args, running_stack

from llmctl import triton_client

WORDS = (
    "employee vacation policy request approval manager days leave public holiday carry over "
    "contract salary review security access badge laptop travel expense receipt reimbursement "
    "training budget remote work office hours overtime compensation benefits insurance pension"
).split()


def make_texts(n: int, words: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + f". Item {i}." for i in range(n)]


def run_triton(grpc: str, texts: list[str], per_request: int, clients: int) -> float:
    grpcclient = triton_client.grpc_module()
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    pool_clients = [grpcclient.InferenceServerClient(url=grpc) for _ in range(clients)]

    def work(index: int) -> int:
        cli = pool_clients[index % clients]
        done = 0
        for chunk in chunks[index::clients]:
            done += triton_client.embed(grpc, chunk, client=cli).shape[0]
        return done

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(work, range(clients)))
    elapsed = time.perf_counter() - start
    assert total == len(texts)
    for cli in pool_clients:
        cli.close()
    return len(texts) / elapsed


def run_inprocess(model, texts: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - start)


def run_onnx(embedder, texts: list[str]) -> float:
    start = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - start)


def main() -> None:
    parser = common_args(argparse.ArgumentParser(description=__doc__))
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--words", type=int, default=90, help="words per text (~128 tokens)")
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = bench_spec(args.threads, args.gguf)
    texts = make_texts(args.texts, args.words)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from llmctl.retrieval.embedders import OnnxEmbedder

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(spec.embedder.model_path), device="cpu")
    batch = spec.embedder.encode_batch_size
    export = tempfile.TemporaryDirectory(prefix="llmctl-bench-onnx-")
    onnx = OnnxEmbedder.export(
        export.name, spec.embedder.model_path, batch_size=batch, threads=args.threads
    )
    # Interleaved rounds on the same machine state: the shared 2-core machines drift by +-10%
    # between minutes, so a ratio of two runs taken one after the other measures the drift.
    t_rates, i_rates, st_rates = [], [], []
    with running_stack(spec, args.grpc) as grpc, export:
        run_triton(grpc, texts[:64], args.per_request, args.clients)  # warm-up
        run_onnx(onnx, texts[:64])
        run_inprocess(model, texts[:64], batch)
        for _ in range(args.rounds):
            t_rates.append(run_triton(grpc, texts, args.per_request, args.clients))
            i_rates.append(run_onnx(onnx, texts))
            st_rates.append(run_inprocess(model, texts, batch))
    ratios = [t / i for t, i in zip(t_rates, i_rates, strict=True)]
    print(
        f"{args.texts} texts of ~{args.words} words, threads {args.threads}; triton: "
        f"{args.clients} concurrent clients x {args.per_request} texts/request; "
        f"{args.rounds} interleaved rounds"
    )
    print(f"triton dynamic batching: median {statistics.median(t_rates):7.1f} texts/s")
    print(f"in-process onnxruntime   : median {statistics.median(i_rates):7.1f} texts/s")
    print(f"sentence-transformers    : median {statistics.median(st_rates):7.1f} texts/s (PyTorch)")
    print(
        f"ratio triton/in-process: median {statistics.median(ratios):.1%} "
        f"(rounds: {', '.join(f'{r:.0%}' for r in ratios)}) (goal >= 90%)"
    )


if __name__ == "__main__":
    main()
