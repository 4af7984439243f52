"""The ``embedder-contrastive`` recipe: fine-tune the retrieval embedder on the evaluation questions.

This is the code a Slurm job runs (``python -m llmctl.training.recipe RUN_SPEC.json``): the data
scientist's step-3 job of choosing and evaluating the embedding model, made repeatable. It

1. reads the blueprint's own corpus with the blueprint's chunking, so the model is tuned on exactly
   the chunks ``llmctl ingest`` will index;
2. splits the dataset's answerable questions into training and held-out sets, deterministically
   (a hash of seed and question id), so before and after are measured on the same unseen questions;
3. pairs each training question with its answering chunk (the expected document's chunk that
   contains the expected answer, else the base model's best chunk of that document);
4. fine-tunes with sentence-transformers' ``MultipleNegativesRankingLoss`` (contrastive: the other
   pairs of a batch are the negatives), in a plain PyTorch loop, because ``SentenceTransformer.fit``
   needs ``datasets`` and ``accelerate``, which llmctl does not otherwise use;
5. measures recall@k (k = ``retrieval.topK``), recall@1 and MRR on the held-out questions before
   and after, honouring each asker's groups as the gateway does;
6. writes the model folder, ``metrics.json`` and ``MANIFEST.json`` (every file's SHA-256) into a
   temporary folder beside the output and renames it into place: a failed run leaves nothing that
   looks like a model.

The held-out figures are the honest ones: the quality gate asks every evaluation question, the
training ones included, so its recall after a fine-tune is optimistic for those.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
MANIFEST_FILE = "MANIFEST.json"
MODEL_DIR = "model"


@dataclass(frozen=True)
class RecipeConfig:
    """What one run needs, written by ``llmctl train`` as JSON beside the batch script."""

    blueprint: str
    dataset: str
    base_model: str
    epochs: int
    batch_size: int
    learning_rate: float
    held_out_fraction: float
    seed: int
    k: int
    threads: int | None = None
    out_dir: str = ""

    @classmethod
    def from_file(cls, path: str | Path, out_dir: str | None = None) -> RecipeConfig:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if out_dir:
            doc["out_dir"] = out_dir
        return cls(**doc)


def split(questions: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, held_out): answerable questions ordered by a hash of seed and id, the first
    ``fraction`` held out. Stable when questions are added: an old question keeps its side."""
    answerable = [q for q in questions if q.get("kind", "answerable") == "answerable"]
    answerable = [q for q in answerable if q.get("expected_docs")]

    def key(q: dict[str, Any]) -> str:
        return hashlib.sha256(f"{seed}:{q.get('id')}".encode()).hexdigest()

    ordered = sorted(answerable, key=key)
    n_held = max(1, round(len(ordered) * fraction)) if ordered else 0
    return ordered[n_held:], ordered[:n_held]


def _encode(model: Any, texts: list[str]) -> Any:
    import numpy as np

    vectors = model.encode(
        texts,
        batch_size=32,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def evaluate(model: Any, questions: list[dict[str, Any]], chunks: list[Any], acl: dict, k: int):
    """recall@k, recall@1 and MRR over ``questions`` (a hit: a chunk of an expected document);
    each question only sees the chunks its asker may read (the gateway filters by groups before
    ranking). ``answer_mrr`` is stricter: the rank of the first chunk that holds the expected
    answer phrase; ``mean_margin`` the cosine by which the best answering chunk beats the best
    other readable chunk. Both still move when document-level recall is already perfect."""
    import numpy as np

    from llmctl.gates.quality import may_read

    if not questions:
        return {f"recall_at_{k}": None, "recall_at_1": None, "mrr": None, "questions": 0}
    cvec = _encode(model, [c.embed_text for c in chunks])
    qvec = _encode(model, [q["question"] for q in questions])
    hits_k = hits_1 = 0
    rr = arr = margin = 0.0
    for qi, q in enumerate(questions):
        groups = q.get("asker_groups") or []
        allowed = np.array([may_read(acl[c.doc_id], groups) for c in chunks])
        scores = np.where(allowed, cvec @ qvec[qi], -np.inf)
        order = np.argsort(-scores)
        expected = set(q.get("expected_docs") or [])
        ranks = [r for r, ci in enumerate(order) if allowed[ci] and chunks[ci].doc_id in expected]
        first = ranks[0] if ranks else None
        hits_k += first is not None and first < k
        hits_1 += first == 0
        rr += 1.0 / (first + 1) if first is not None else 0.0
        phrase = str(q.get("expected_answer_contains") or "").lower()
        exact = [r for r in ranks if phrase and phrase in chunks[order[r]].text.lower()]
        arr += 1.0 / (exact[0] + 1) if exact else 0.0
        relevant = np.array([c.doc_id in expected for c in chunks]) & allowed
        if relevant.any() and (allowed & ~relevant).any():
            margin += float(scores[relevant].max() - scores[allowed & ~relevant].max())
    n = len(questions)
    return {
        f"recall_at_{k}": round(hits_k / n, 4),
        "recall_at_1": round(hits_1 / n, 4),
        "mrr": round(rr / n, 4),
        "answer_mrr": round(arr / n, 4),
        "mean_margin": round(margin / n, 4),
        "questions": n,
    }


def pairs(model: Any, questions: list[dict[str, Any]], chunks: list[Any]) -> list[tuple[str, str]]:
    """(question, answering chunk) for each training question."""
    by_doc: dict[str, list[Any]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    out = []
    for q in questions:
        candidates = [c for d in q.get("expected_docs") or [] for c in by_doc.get(d, [])]
        if not candidates:
            continue
        phrase = str(q.get("expected_answer_contains") or "").lower()
        exact = [c for c in candidates if phrase and phrase in c.text.lower()]
        if exact:
            best = exact[0]
        else:
            qv = _encode(model, [q["question"]])[0]
            cv = _encode(model, [c.embed_text for c in candidates])
            best = candidates[int((cv @ qv).argmax())]
        out.append((q["question"], best.embed_text))
    return out


def fine_tune(model: Any, train: list[tuple[str, str]], cfg: RecipeConfig) -> list[float]:
    """Contrastive fine-tune in place; returns the mean loss of each epoch."""
    import torch

    try:
        from sentence_transformers.sentence_transformer import losses
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import losses  # type: ignore[no-redef,attr-defined]

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    loss_fn = losses.MultipleNegativesRankingLoss(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    model.train()
    history = []
    for _ in range(cfg.epochs):
        order = list(train)
        rng.shuffle(order)
        total, steps = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2:  # one pair has no in-batch negative
                continue
            tokenize = getattr(model, "preprocess", None) or model.tokenize
            features = [tokenize([a for a, _ in batch]), tokenize([p for _, p in batch])]
            loss = loss_fn(features, None)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            steps += 1
        history.append(round(total / max(steps, 1), 4))
    model.eval()
    return history


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` (but the manifest) with its SHA-256 and size."""
    from llmctl.digest import sha256_file

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST_FILE:
            rel = p.relative_to(folder).as_posix()
            out[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    return out


def run(cfg: RecipeConfig) -> dict[str, Any]:
    """Tune, evaluate and write the artifact; returns the metrics also written to metrics.json."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.time()
    import torch
    from sentence_transformers import SentenceTransformer

    from llmctl.blueprint import load_blueprint
    from llmctl.gates.quality import load_eval_set
    from llmctl.retrieval.chunking import chunk_document, tokenizer_for
    from llmctl.retrieval.documents import read_sources, sources_from_blueprint

    threads = cfg.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 0)
    if threads:  # the job's CPUs, not the node's: torch would otherwise take every core
        torch.set_num_threads(threads)
    bp = load_blueprint(cfg.blueprint)
    read = read_sources(sources_from_blueprint(bp))
    tok = tokenizer_for(Path(cfg.base_model))
    ch = bp.retrieval.chunking
    chunks = [
        c
        for d in read.documents
        for c in chunk_document(d, tok, tokens=int(ch.tokens), overlap=int(ch.overlap))
    ]
    acl = {d.doc_id: d.acl for d in read.documents}
    train_q, held_q = split(load_eval_set(cfg.dataset), cfg.held_out_fraction, cfg.seed)
    model = SentenceTransformer(cfg.base_model, device="cpu")
    before = evaluate(model, held_q, chunks, acl, cfg.k)
    train_pairs = pairs(model, train_q, chunks)
    t0 = time.time()
    losses_ = fine_tune(model, train_pairs, cfg)
    train_s = time.time() - t0
    after = evaluate(model, held_q, chunks, acl, cfg.k)

    out = Path(cfg.out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save(str(tmp / MODEL_DIR))
        metrics = {
            "recipe": "embedder-contrastive",
            "base_model": cfg.base_model,
            "k": cfg.k,
            "recall_before": before,
            "recall_after": after,
            "train_questions": len(train_q),
            "held_out_questions": [q.get("id") for q in held_q],
            "train_pairs": len(train_pairs),
            "chunks": len(chunks),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "epoch_loss": losses_,
            "train_seconds": round(train_s, 2),
            "wall_seconds": round(time.time() - started, 2),
            "cpu_seconds": round(_cpu_seconds(), 2),
            "torch_threads": torch.get_num_threads(),
        }
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest(tmp), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Entry point of the batch job."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llmctl.training.recipe")
    parser.add_argument(
        "config", help="the recipe settings (JSON), as the batch script writes them"
    )
    parser.add_argument("--out", help="the artifact folder (default: out_dir in the settings)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    cfg = RecipeConfig.from_file(args.config, args.out)
    if not cfg.out_dir:
        parser.error("no artifact folder: pass --out DIR")
    metrics = run(cfg)
    k = metrics["k"]
    print(
        f"recall@{k} before {metrics['recall_before'][f'recall_at_{k}']} after "
        f"{metrics['recall_after'][f'recall_at_{k}']} (held-out {len(metrics['held_out_questions'])}); "
        f"trained {metrics['train_seconds']} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
