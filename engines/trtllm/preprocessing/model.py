"""Triton python-backend ``preprocessing`` model (llmctl production LLM, ensemble step 1).

Tokenises the prompt and the stop/bad word lists with the model's own tokenizer (copied next to
the engine by ``llmctl build``), rejects prompts longer than the engine was built for instead of
letting the engine fail later, and clamps ``max_tokens`` to what the engine's sequence length
leaves. Word lists use TensorRT-LLM's [2, N] layout: row 0 the concatenated token ids, row 1 the
end offset of each word, padded with 0 and -1.

Copied verbatim into the model repository; imports only what the Triton TRT-LLM image has.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(config: dict, key: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value is None:
        raise pb_utils.TritonModelException(f"config.pbtxt lacks parameter {key!r}")
    return value


def _text(x: object) -> str:
    return x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        self.tokenizer = AutoTokenizer.from_pretrained(
            _param(config, "tokenizer_dir"), legacy=False
        )
        self.add_special = _param(config, "add_special_tokens").lower() == "true"
        self.max_input_len = int(_param(config, "max_input_len"))
        self.max_seq_len = int(_param(config, "max_seq_len"))
        eos = self.tokenizer.eos_token_id
        self.end_id = int(eos if eos is not None else 0)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.end_id)

    def _words(self, tensor, batch: int) -> np.ndarray:
        rows = tensor.as_numpy() if tensor is not None else None
        out = []
        width = 1
        for b in range(batch):
            ids: list[int] = []
            offsets: list[int] = []
            words = [] if rows is None else [_text(w) for w in rows[b].reshape(-1) if _text(w)]
            for word in words:
                ids.extend(self.tokenizer.encode(word, add_special_tokens=False))
                offsets.append(len(ids))
            out.append((ids, offsets))
            width = max(width, len(ids), len(offsets))
        arr = np.zeros((batch, 2, width), dtype=np.int32)
        arr[:, 1, :] = -1
        for b, (ids, offsets) in enumerate(out):
            arr[b, 0, : len(ids)] = ids
            arr[b, 1, : len(offsets)] = offsets
        return arr

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._one(request)))
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _one(self, request) -> list:
        queries = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy()
        batch = queries.shape[0]
        wanted = (
            pb_utils.get_input_tensor_by_name(request, "REQUEST_OUTPUT_LEN")
            .as_numpy()
            .reshape(batch)
        )
        encoded = [
            self.tokenizer.encode(_text(q.reshape(-1)[0]), add_special_tokens=self.add_special)
            for q in queries
        ]
        for ids in encoded:
            if len(ids) > self.max_input_len:
                raise ValueError(
                    f"prompt of {len(ids)} tokens exceeds the engine's max_input_len {self.max_input_len}"
                )
        lengths = np.array([[len(ids)] for ids in encoded], dtype=np.int32)
        width = max(1, int(lengths.max()))
        input_ids = np.full((batch, width), self.pad_id, dtype=np.int32)
        for b, ids in enumerate(encoded):
            input_ids[b, : len(ids)] = ids
        room = self.max_seq_len - lengths.reshape(batch)
        out_len = np.minimum(np.maximum(wanted.astype(np.int32), 1), room).reshape(batch, 1)

        def ids_or_default(name: str, default: int) -> np.ndarray:
            t = pb_utils.get_input_tensor_by_name(request, name)
            if t is None:
                return np.full((batch, 1), default, dtype=np.int32)
            return t.as_numpy().astype(np.int32).reshape(batch, 1)

        return [
            pb_utils.Tensor("INPUT_ID", input_ids),
            pb_utils.Tensor("REQUEST_INPUT_LEN", lengths),
            pb_utils.Tensor("REQUEST_OUTPUT_LEN", out_len.astype(np.int32)),
            pb_utils.Tensor(
                "BAD_WORDS_IDS",
                self._words(pb_utils.get_input_tensor_by_name(request, "BAD_WORDS_DICT"), batch),
            ),
            pb_utils.Tensor(
                "STOP_WORDS_IDS",
                self._words(pb_utils.get_input_tensor_by_name(request, "STOP_WORDS_DICT"), batch),
            ),
            pb_utils.Tensor("OUT_END_ID", ids_or_default("END_ID", self.end_id)),
            pb_utils.Tensor("OUT_PAD_ID", ids_or_default("PAD_ID", self.pad_id)),
        ]
