"""Export the sentence-transformers embedding model to ONNX at build time, and prove it equal.

``llmctl build`` serves the embedder on ONNX Runtime (``engines/local/embedder/onnx_encoder.py``
says why). The graph exported here is the sentence-transformers pipeline of the model folder:
the Transformer, mean Pooling over the attention mask, and Normalize, so it returns exactly what
``SentenceTransformer.encode(..., normalize_embeddings=True)`` returns. Before the build is
accepted the exported model is run through the serving code on texts that exercise truncation,
padding and batching, and compared with sentence-transformers: a cosine below ``MIN_COSINE`` on
any text fails the build instead of serving different vectors from those already in an index.

Torch, sentence-transformers and onnx are needed only here, at build time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from llmctl.errors import BuildError

EXPORT_FORMAT = 1  # bump when the exported graph changes (part of the build key)
OPSET = 17
MIN_COSINE = 0.9999
ENCODER_SETTINGS = "encoder.json"  # beside model.onnx: max_seq_length for the serving side

CHECK_TEXTS = [
    "How many weeks of paid parental leave do employees get?",
    "  Leading and trailing spaces are stripped  ",
    "",
    "Reisekosten: Übernachtungen über 150 € brauchen eine Genehmigung. 出張規程",
    " ".join(["Every expense above the limit needs the approval of a director."] * 40),  # truncated
]


def encoder_module(templates: Path) -> ModuleType:
    """``onnx_encoder.py`` from the embedder's templates: the code Triton runs, loaded here."""
    path = templates / "embedder" / "onnx_encoder.py"
    spec = importlib.util.spec_from_file_location("llmctl_onnx_encoder", path)
    if spec is None or spec.loader is None:
        raise BuildError(f"embedder template missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pipeline_modules(model_dir: Path) -> list[str]:
    """The sentence-transformers module types of ``model_dir`` (modules.json)."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = "no modules.json" if isinstance(exc, FileNotFoundError) else f"modules.json: {exc}"
        raise BuildError(
            f"{model_dir} is not a sentence-transformers model folder ({why}); point "
            "retrieval.embedding.model at one (a folder saved by SentenceTransformer.save)"
        ) from exc
    return [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]


def export_embedder(
    model_dir: Path, dest: Path, max_seq_length: int, templates: Path, threads: int = 1
) -> dict[str, Any]:
    """Write ``dest`` (model.onnx) for ``model_dir``, with ``tokenizer.json`` and
    ``encoder.json`` beside it; return what the build manifest records."""
    kinds = pipeline_modules(model_dir)
    if kinds[:2] != ["Transformer", "Pooling"] or any(
        k not in ("Transformer", "Pooling", "Normalize") for k in kinds
    ):
        raise BuildError(
            f"{model_dir}: cannot export the pipeline {kinds} to ONNX; "
            "llmctl serves Transformer + Pooling (+ Normalize) embedding models"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise BuildError(
            "building the embedder needs torch, sentence-transformers and onnx (llmctl[local])"
        ) from exc

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter build's output
    hf_logging.set_verbosity_error()
    model = SentenceTransformer(str(model_dir), device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    seq = int(model.max_seq_length)
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode_mean_tokens", None)
    if mode is False:
        raise BuildError(f"{model_dir}: only mean pooling is exported (this model pools otherwise)")
    normalise = "Normalize" in kinds

    class Pipeline(torch.nn.Module):
        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalise:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    pipeline = Pipeline(model[0].auto_model).eval()
    sample = model[0].tokenizer(["an example"], return_tensors="pt")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                pipeline,
                (sample["input_ids"], sample["attention_mask"]),
                str(dest),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        except Exception as exc:
            raise BuildError(
                f"exporting {model_dir} to ONNX failed: {type(exc).__name__}: {exc}"
            ) from exc

    tokenizer_file = dest.parent / "tokenizer.json"
    backend = getattr(model[0].tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BuildError(f"{model_dir}: the model has no fast tokenizer to serve with")
    backend.save(str(tokenizer_file))
    encoder = encoder_module(templates).OnnxEncoder(str(dest), str(tokenizer_file), seq, threads)
    served = encoder.encode(CHECK_TEXTS, batch_size=2)
    reference = model.encode(
        CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    cosines = (served * reference).sum(axis=1)
    worst = float(cosines.min())
    if worst < MIN_COSINE:
        dest.unlink(missing_ok=True)
        raise BuildError(
            f"the ONNX export of {model_dir} differs from sentence-transformers "
            f"(cosine {worst:.5f} < {MIN_COSINE}); report this with the model folder"
        )
    info = {
        "runtime": "onnxruntime",
        "opset": OPSET,
        "max_seq_length": seq,
        "checked_texts": len(CHECK_TEXTS),
        "min_cosine_vs_sentence_transformers": round(worst, 6),
    }
    (dest.parent / ENCODER_SETTINGS).write_text(json.dumps(info, indent=2) + "\n")
    return info
