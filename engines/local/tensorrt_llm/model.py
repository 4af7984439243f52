"""Triton python-backend stand-in for the TensorRT-LLM ``ensemble`` model (llmctl local target).

Runs a GGUF with llama-cpp-python on CPU and speaks the TensorRT-LLM ensemble's tensors, so a
client cannot tell it from production:

- ``text_input`` is the complete prompt, exactly as TensorRT-LLM receives it: the caller (the
  gateway) applies the model's chat template. Nothing is added here, so the same prompt gives the
  same behaviour on every target. ``llmctl.local.prompt`` renders chat messages with the GGUF's
  own template for the local model.
- decoupled: with ``stream`` true every response carries one text delta, then an empty final
  response (TRITONSERVER_RESPONSE_COMPLETE_FINAL); with ``stream`` false one response carries the
  whole completion (the prompt is never echoed).
- sampling: ``temperature`` absent or 0 is greedy decoding (TensorRT-LLM's default);
  ``top_k``/``top_p``/``repetition_penalty``/``presence_penalty``/``frequency_penalty``/
  ``random_seed``/``stop_words`` map onto llama.cpp; ``end_id``, ``pad_id``, ``bad_words``,
  ``min_length`` and ``return_log_probs`` are accepted and ignored; ``beam_width`` > 1 is refused.

This file is copied verbatim into the model repository; it must import only what the Triton
python environment has (llama_cpp, numpy, triton_python_backend_utils).
"""

from __future__ import annotations

import json
import os
import sys
import time

# The wheel's stub embeds an interpreter that ignores PYTHONPATH; llmctl passes the packages this
# model needs in LLMCTL_STUB_PYTHONPATH (see llmctl.local.tritonserver.build_env).
for _path in reversed(os.environ.get("LLMCTL_STUB_PYTHONPATH", "").split(os.pathsep)):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

CANCEL_CHECK_S = 0.1  # a cancelled request stops within about this long


def _param(config: dict, key: str, default: str | None = None) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value is None:
        if default is None:
            raise pb_utils.TritonModelException(f"config.pbtxt lacks parameter {key!r}")
        return default
    return value


def _scalar(request, name: str, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    value = tensor.as_numpy().reshape(-1)
    if value.size == 0:
        return default
    item = value[0]
    return item.item() if hasattr(item, "item") else item


def _strings(request, name: str) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return []
    out = []
    for item in tensor.as_numpy().reshape(-1):
        text = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
        if text:
            out.append(text)
    return out


def _text_tensor(text: str) -> pb_utils.Tensor:
    return pb_utils.Tensor("text_output", np.array([[text.encode("utf-8")]], dtype=np.object_))


class TritonPythonModel:
    """One llama.cpp context; requests are served one after another in arrival order."""

    def initialize(self, args: dict) -> None:
        from llama_cpp import Llama

        config = json.loads(args["model_config"])
        path = _param(config, "gguf_path")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"GGUF file not found: {path}")
        threads = int(_param(config, "n_threads", "0")) or (os.cpu_count() or 1)
        threads_batch = int(_param(config, "n_threads_batch", "0")) or threads
        self.llm = Llama(
            model_path=path,
            n_ctx=int(_param(config, "n_ctx", "2048")),
            n_threads=threads,
            n_threads_batch=threads_batch,
            n_batch=int(_param(config, "n_batch", "512")),
            verbose=False,
        )
        self.logger = pb_utils.Logger
        self.logger.log_info(f"ensemble: loaded {path} ({threads} threads)")

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._generate(request, sender)
            except Exception as exc:  # report to the caller, keep serving
                sender.send(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                )
        return None

    def _generate(self, request, sender) -> None:
        prompts = _strings(request, "text_input")
        if len(prompts) != 1:
            raise ValueError("send exactly one non-empty text_input per request")
        if int(_scalar(request, "beam_width", 1) or 1) > 1:
            raise ValueError("beam_width > 1 is not supported by the local target")
        max_tokens = int(_scalar(request, "max_tokens", 16))
        stream = bool(_scalar(request, "stream", False))
        temperature = float(_scalar(request, "temperature", 0.0))
        kwargs = {
            "max_tokens": max(1, max_tokens),
            "temperature": temperature,
            "top_k": int(_scalar(request, "top_k", 0) or 0) if temperature > 0 else 1,
            "top_p": float(_scalar(request, "top_p", 1.0) or 1.0),
            "repeat_penalty": float(_scalar(request, "repetition_penalty", 1.0)),
            "presence_penalty": float(_scalar(request, "presence_penalty", 0.0)),
            "frequency_penalty": float(_scalar(request, "frequency_penalty", 0.0)),
            "stop": _strings(request, "stop_words") or None,
            "stream": True,
        }
        seed = _scalar(request, "random_seed")
        if seed is not None:
            kwargs["seed"] = int(seed) & 0x7FFFFFFF

        is_cancelled = getattr(request, "is_cancelled", lambda: False)
        pieces: list[str] = []
        # is_cancelled() is a round trip to the server process; asking on every token cost ~10%
        # of streaming throughput on two cores, so ask at most every CANCEL_CHECK_S.
        next_check = time.monotonic() + CANCEL_CHECK_S
        for chunk in self.llm.create_completion(prompts[0], **kwargs):
            delta = chunk["choices"][0]["text"]
            if time.monotonic() >= next_check:
                if is_cancelled():
                    break
                next_check = time.monotonic() + CANCEL_CHECK_S
            if not delta:
                continue
            if stream:
                sender.send(pb_utils.InferenceResponse(output_tensors=[_text_tensor(delta)]))
            else:
                pieces.append(delta)
        if stream:
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        else:
            sender.send(
                pb_utils.InferenceResponse(output_tensors=[_text_tensor("".join(pieces))]),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    def finalize(self) -> None:
        self.llm = None
