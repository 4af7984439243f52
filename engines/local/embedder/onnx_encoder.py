"""The embedding model's forward pass on ONNX Runtime: text -> L2-normalised float32 vectors.

Why ONNX Runtime: on the 2-core CPU machines this runs on, the MiniLM forward pass for one
question took 13 ms in PyTorch in process (20 ms inside Triton's python stub) and 4-5 ms in ONNX
Runtime, with the same vectors (cosine 1.00000); the question's embedding is most of what the
gateway adds to a request. The graph is the sentence-transformers pipeline itself (Transformer,
mean Pooling, Normalize), exported by ``llmctl.local.onnx_export`` at build time and checked there
against sentence-transformers.

Used twice, so the served code and the in-process baseline are the same code: Triton's
``embedder`` model imports it from its version folder (the build copies it there), and
``llmctl.retrieval.embedders.OnnxEmbedder`` loads it from ``engines/local/embedder``. It must
import only numpy, tokenizers and onnxruntime.
"""

from __future__ import annotations

import numpy as np


class OnnxEncoder:
    """A tokenizer (the model's own ``tokenizer.json``) and one ONNX Runtime session."""

    def __init__(
        self, model_file: str, tokenizer_file: str, max_seq_length: int, threads: int = 1
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(tokenizer_file)
        # The same truncation as sentence-transformers (max_seq_length tokens, specials included);
        # padding is per batch, to the longest text in it.
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Spinning workers would hold both cores between requests, starving Triton's server
        # threads, the LLM and the gateway on the same small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Vectors for ``texts`` in order. Texts are batched by length so padding stays small."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # sentence-transformers strips each text before tokenizing; so do we, for equal vectors
        encodings = self.tokenizer.encode_batch([str(t).strip() for t in texts])
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), max(1, batch_size)):
            rows = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[rows] = self.session.run(None, feed)[0]
        return out
