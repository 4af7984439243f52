"""Triton python-backend ``embedder`` model: a sentence-transformers model on CPU.

Two runtimes, chosen by what the build put in this version folder:

- ``model.onnx`` present (the local target: ``llmctl build`` exports the model folder's
  sentence-transformers pipeline and checks it against sentence-transformers, see
  ``llmctl.local.onnx_export``): ONNX Runtime through ``onnx_encoder.py``, copied beside this
  file, about 3x faster for a single question on CPU (why: see there).
- otherwise (the Kubernetes target's repository, whose model folder is mounted at run time):
  sentence-transformers on PyTorch from the ``model_path`` parameter.

Dynamic batching hands ``execute`` every request that arrived within the queue delay; they are
embedded together (one forward pass per ``encode_batch_size`` texts), which is where the
throughput comes from. Output: float32 [dimensions], L2-normalised, one row per input text.

This file is copied verbatim into the model repository; it must import only what the Triton
python environment has (onnxruntime and tokenizers, or sentence_transformers and torch; numpy,
triton_python_backend_utils).
"""

from __future__ import annotations

import importlib.util
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


def _onnx_encoder(version_dir: str, config: dict, threads: int):
    path = os.path.join(version_dir, "onnx_encoder.py")
    spec = importlib.util.spec_from_file_location("llmctl_onnx_encoder", path)
    if spec is None or spec.loader is None:
        raise pb_utils.TritonModelException(f"missing {path}: rebuild with llmctl build")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    max_seq = int(_param(config, "max_seq_length", "0"))
    if not max_seq:  # the model's own limit, as the build found it
        with open(os.path.join(version_dir, "encoder.json"), encoding="utf-8") as f:
            max_seq = int(json.load(f)["max_seq_length"])
    encoder = module.OnnxEncoder(
        os.path.join(version_dir, "model.onnx"),
        os.path.join(version_dir, "tokenizer.json"),
        max_seq,
        threads,
    )
    return encoder.encode, encoder.dim


def _sentence_transformers(config: dict, threads: int):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    path = _param(config, "model_path")
    if not os.path.isdir(path):
        raise pb_utils.TritonModelException(f"embedding model folder not found: {path}")
    model = SentenceTransformer(path, device="cpu")
    max_seq = int(_param(config, "max_seq_length", "0"))
    if max_seq:
        model.max_seq_length = max_seq

    def encode(texts: list[str], batch_size: int) -> np.ndarray:
        return model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)

    dimension = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    return encode, int(dimension())


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        threads = int(_param(config, "n_threads", "0")) or (os.cpu_count() or 1)
        version_dir = os.path.join(args["model_repository"], str(args["model_version"]))
        if os.path.isfile(os.path.join(version_dir, "model.onnx")):
            self.runtime = "onnxruntime"
            self.encode, dim = _onnx_encoder(version_dir, config, threads)
        else:
            self.runtime = "sentence-transformers"
            self.encode, dim = _sentence_transformers(config, threads)
        self.batch_size = int(_param(config, "encode_batch_size", "16"))
        self.dimensions = int(_param(config, "dimensions"))
        if dim != self.dimensions:
            raise pb_utils.TritonModelException(
                f"the embedding model makes {dim}-dimensional vectors; "
                f"the config says {self.dimensions}"
            )
        self.encode(["warm-up"], self.batch_size)
        pb_utils.Logger.log_info(
            f"embedder: {self.runtime}, {threads} threads, dim {self.dimensions}"
        )

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
        vectors = self.encode(texts, self.batch_size)
        responses = []
        start = 0
        for count in counts:
            out = pb_utils.Tensor("embedding", np.ascontiguousarray(vectors[start : start + count]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += count
        return responses

    def finalize(self) -> None:
        self.encode = None
