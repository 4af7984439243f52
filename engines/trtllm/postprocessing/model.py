"""Triton python-backend ``postprocessing`` model (llmctl production LLM, ensemble step 3).

Detokenises ``output_ids`` up to ``sequence_length``. The engine runs with
``exclude_input_in_output``, so these are only generated tokens; when streaming, each response
carries the newest tokens and becomes one ``text_output`` delta, as the contract requires.

Copied verbatim into the model repository; imports only what the Triton TRT-LLM image has.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        from transformers import AutoTokenizer

        config = json.loads(args["model_config"])
        params = config.get("parameters", {})
        path = params.get("tokenizer_dir", {}).get("string_value")
        if not path:
            raise pb_utils.TritonModelException("config.pbtxt lacks parameter 'tokenizer_dir'")
        self.tokenizer = AutoTokenizer.from_pretrained(path, legacy=False)
        skip = params.get("skip_special_tokens", {}).get("string_value", "true")
        self.skip_special = skip.lower() == "true"

    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            batch, beams = tokens.shape[0], tokens.shape[1]
            texts = np.empty((batch, beams), dtype=object)
            for b in range(batch):
                for k in range(beams):
                    ids = tokens[b, k, : int(lengths[b, k])].tolist()
                    texts[b, k] = self.tokenizer.decode(
                        ids, skip_special_tokens=self.skip_special
                    ).encode("utf-8")
            responses.append(
                pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", texts)])
            )
        return responses
