"""Triton python-backend ``embedder`` model (llmctl local target): sentence-transformers on CPU.

Dynamic batching hands ``execute`` every request that arrived within the queue delay; they are
embedded in one ``encode`` call (one forward pass per ``encode_batch_size`` texts), which is where
the throughput comes from. Output: float32 [dimensions], L2-normalised, one row per input text.

This file is copied verbatim into the model repository; it must import only what the Triton
python environment has (sentence_transformers, torch, numpy, triton_python_backend_utils).
"""

from __future__ import annotations

import json
import os
import sys

# The wheel's stub embeds an interpreter that ignores PYTHONPATH; llmctl passes the packages this
# model needs in LLMCTL_STUB_PYTHONPATH (see llmctl.local.tritonserver.build_env).
for _path in reversed(os.environ.get("LLMCTL_STUB_PYTHONPATH", "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


def _param(config: dict, key: str, default: str | None = None) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value is None:
        if default is None:
            raise pb_utils.TritonModelException(f"config.pbtxt lacks parameter {key!r}")
        return default
    return value


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        config = json.loads(args["model_config"])
        threads = int(_param(config, "n_threads", "0")) or (os.cpu_count() or 1)

        import torch

        torch.set_num_threads(threads)
        from sentence_transformers import SentenceTransformer

        path = _param(config, "model_path")
        if not os.path.isdir(path):
            raise pb_utils.TritonModelException(f"embedding model folder not found: {path}")
        self.model = SentenceTransformer(path, device="cpu")
        max_seq = int(_param(config, "max_seq_length", "0"))
        if max_seq:
            self.model.max_seq_length = max_seq
        self.batch_size = int(_param(config, "encode_batch_size", "64"))
        self.dimensions = int(_param(config, "dimensions"))
        dim = self.model.get_sentence_embedding_dimension()
        if dim != self.dimensions:
            raise pb_utils.TritonModelException(
                f"{path} makes {dim}-dimensional embeddings; the config says {self.dimensions}"
            )
        self.model.encode(["warm-up"], normalize_embeddings=True)
        pb_utils.Logger.log_info(f"embedder: loaded {path} ({threads} threads, dim {dim})")

    def execute(self, requests):
        texts: list[str] = []
        counts: list[int] = []
        for request in requests:
            items = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            texts.extend(
                x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
                for x in items
            )
            counts.append(int(items.size))
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        responses = []
        start = 0
        for count in counts:
            out = pb_utils.Tensor("embedding", np.ascontiguousarray(vectors[start : start + count]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += count
        return responses

    def finalize(self) -> None:
        self.model = None
