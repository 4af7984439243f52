"""Triton python-backend stand-in for TensorRT-LLM's LLM-API model ``tensorrt_llm`` (local target).

Runs a GGUF with llama-cpp-python on CPU and answers exactly as the LLM-API model of current
``-trtllm-python-py3`` images does (``triton_backend/all_models/llmapi/tensorrt_llm`` in
NVIDIA/TensorRT-LLM), so a client cannot tell it from production:

- ``text_input`` is the complete prompt: the caller (the gateway) applies the chat template, as
  it must for the LLM-API model's plain-text input. ``llmctl.local.prompt`` renders messages with
  the GGUF's own template for the local model.
- decoupled; with ``streaming`` true every response carries the whole text generated so far in
  ``text_output`` (the LLM API's ``CompletionOutput.text`` is cumulative; clients take the new
  suffix), and the last one carries TRITONSERVER_RESPONSE_COMPLETE_FINAL. With ``streaming``
  false one final response carries the whole completion. The prompt is never echoed.
- ``finish_reason`` (with ``return_finish_reason``) is the string of the LLM API's value:
  ``None`` while streaming, then ``stop``, ``length`` or ``cancelled``.
- sampling: ``sampling_param_temperature`` absent or 0 is greedy decoding; ``top_k``, ``top_p``,
  ``frequency_penalty``, ``presence_penalty``, ``seed``, ``stop`` and ``max_tokens`` (default 32,
  the LLM API's) map onto llama.cpp; llama.cpp's multiplicative repeat penalty is a model setting
  (``repeat_penalty`` parameter), as TensorRT-LLM's LLM-API model exposes none per request.
  ``best_of`` > 1, images and LoRA adapters are refused with a clear error.

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
DEFAULT_MAX_TOKENS = 32  # tensorrt_llm.SamplingParams' default
UNSUPPORTED = ("image_url", "lora_id", "lora_name", "lora_path")


def _version_settings(args: dict) -> dict:
    """Per-version overrides of the model's parameters (``<version>/settings.json``).

    Triton's parameters belong to the model, not a version; a canary revision served beside the
    stable one as a second version (``llmctl rollout``) carries its own GGUF and context here.
    """
    path = os.path.join(args.get("model_repository", ""), str(args.get("model_version", "")))
    path = os.path.join(path, "settings.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return {str(k): {"string_value": str(v)} for k, v in json.load(fh).items()}


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


def _strings_tensor(name: str, text: str) -> pb_utils.Tensor:
    return pb_utils.Tensor(name, np.array([text.encode("utf-8")], dtype=np.object_))


class TritonPythonModel:
    """One llama.cpp context; requests are served one after another in arrival order."""

    def initialize(self, args: dict) -> None:
        from llama_cpp import Llama

        config = json.loads(args["model_config"])
        config["parameters"] = {**config.get("parameters", {}), **_version_settings(args)}
        self.version = str(args.get("model_version", ""))
        path = _param(config, "gguf_path")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"GGUF file not found: {path}")
        threads = int(_param(config, "n_threads", "0")) or (os.cpu_count() or 1)
        threads_batch = int(_param(config, "n_threads_batch", "0")) or threads
        self.repeat_penalty = float(_param(config, "repeat_penalty", "1.0"))
        self.llm = Llama(
            model_path=path,
            n_ctx=int(_param(config, "n_ctx", "2048")),
            n_threads=threads,
            n_threads_batch=threads_batch,
            n_batch=int(_param(config, "n_batch", "512")),
            verbose=False,
        )
        self.logger = pb_utils.Logger
        self.logger.log_info(
            f"tensorrt_llm version {self.version}: loaded {path} ({threads} threads)"
        )

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

    def _sampling(self, request) -> dict:
        if int(_scalar(request, "sampling_param_best_of", 1) or 1) > 1:
            raise ValueError("sampling_param_best_of > 1 is not supported by the local target")
        temperature = float(_scalar(request, "sampling_param_temperature", 0.0) or 0.0)
        kwargs = {
            "max_tokens": max(
                1, int(_scalar(request, "sampling_param_max_tokens", DEFAULT_MAX_TOKENS))
            ),
            "temperature": temperature,
            "top_k": int(_scalar(request, "sampling_param_top_k", 0) or 0)
            if temperature > 0
            else 1,
            "top_p": float(_scalar(request, "sampling_param_top_p", 1.0) or 1.0),
            "repeat_penalty": self.repeat_penalty,
            "presence_penalty": float(_scalar(request, "sampling_param_presence_penalty", 0.0)),
            "frequency_penalty": float(_scalar(request, "sampling_param_frequency_penalty", 0.0)),
            "stop": _strings(request, "sampling_param_stop") or None,
            "stream": True,
        }
        seed = _scalar(request, "sampling_param_seed")
        if seed is not None:
            kwargs["seed"] = int(seed) & 0x7FFFFFFF
        return kwargs

    def _response(
        self, request, text: str, finish: str | None, times: dict
    ) -> pb_utils.InferenceResponse:
        tensors = [_strings_tensor("text_output", text)]
        if _scalar(request, "return_finish_reason", False):
            tensors.append(_strings_tensor("finish_reason", str(finish)))
        if _scalar(request, "return_stop_reason", False):
            tensors.append(_strings_tensor("stop_reason", "None"))
        if finish is not None and _scalar(request, "sampling_param_return_perf_metrics", False):
            for name, value in times.items():
                tensors.append(pb_utils.Tensor(name, np.array([value], dtype=np.int64)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _generate(self, request, sender) -> None:
        arrived = time.time_ns()
        if _scalar(request, "stop", False):  # the LLM-API model's cancel-by-request-id call
            raise RuntimeError("Request cancelled by client")
        for name in UNSUPPORTED:
            if pb_utils.get_input_tensor_by_name(request, name) is not None:
                raise ValueError(f"{name} is not supported by the local target")
        prompts = _strings(request, "text_input")
        if len(prompts) != 1:
            raise ValueError("send exactly one non-empty text_input per request")
        kwargs = self._sampling(request)
        streaming = bool(_scalar(request, "streaming", False))
        times = {"arrival_time_ns": arrived, "first_scheduled_time_ns": time.time_ns()}

        is_cancelled = getattr(request, "is_cancelled", lambda: False)
        text = ""
        finish = None
        # is_cancelled() is a round trip to the server process; asking on every token cost ~10%
        # of streaming throughput on two cores, so ask at most every CANCEL_CHECK_S.
        next_check = time.monotonic() + CANCEL_CHECK_S
        for chunk in self.llm.create_completion(prompts[0], **kwargs):
            choice = chunk["choices"][0]
            delta = choice["text"]
            finish = choice.get("finish_reason") or None
            if time.monotonic() >= next_check:
                if is_cancelled():
                    finish = "cancelled"
                    break
                next_check = time.monotonic() + CANCEL_CHECK_S
            if delta:
                if not text:
                    times["first_token_time_ns"] = time.time_ns()
                text += delta
                if streaming and finish is None:
                    sender.send(self._response(request, text, None, times))
        times.setdefault("first_token_time_ns", time.time_ns())
        times["last_token_time_ns"] = time.time_ns()
        sender.send(
            self._response(request, text, finish or "cancelled", times),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
        )

    def finalize(self) -> None:
        self.llm = None
