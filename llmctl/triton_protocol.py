"""The LLM's wire format: TensorRT-LLM's LLM-API model tensors, and the legacy ensemble's.

Pure data, no I/O: ``llmctl.triton_client`` sends these over gRPC and HTTP, the load tests post
``generate_payload`` themselves. docs/CONTRACTS.md names the tensors; the local stand-in
(``engines/local/tensorrt_llm``) and the production repository (``engines/trtllm/llmapi``) declare
them, and tests/test_serving_contract.py keeps the two identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmctl.errors import BackendUnavailable

# TensorRT-LLM's LLM-API python model, the name every target serves the LLM under
# (docs/CONTRACTS.md); the legacy TensorRT-engine path serves it as the inflight-batcher "ensemble".
LLM_MODEL = "tensorrt_llm"
LEGACY_LLM_MODEL = "ensemble"
LLMAPI = "llmapi"
EMBED_MODEL = "embedder"
ENSEMBLE = "ensemble"


@dataclass(frozen=True)
class Sampling:
    """Per-request decoding settings, named after TensorRT-LLM's ``SamplingParams``.

    ``None`` leaves a setting to the model (greedy decoding when no temperature is sent). The
    LLM-API model takes exactly these as ``sampling_param_<name>`` tensors.
    """

    max_tokens: int = 128
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def tensors(self) -> dict[str, Any]:
        """``sampling_param_*`` name -> value for the settings that are set."""
        out: dict[str, Any] = {"sampling_param_max_tokens": int(self.max_tokens)}
        for name in ("temperature", "top_k", "top_p", "frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if value is not None:
                out[f"sampling_param_{name}"] = value
        if self.seed is not None:
            out["sampling_param_seed"] = int(self.seed)
        if self.stop:
            out["sampling_param_stop"] = list(self.stop)
        return out


class TextStream:
    """Turns the LLM-API model's responses into text deltas and remembers the finish reason.

    The LLM-API model streams ``CompletionOutput.text``, the whole text so far, in every
    response; the caller wants only what is new. A response whose text does not extend what was
    seen (a detokeniser revising its last characters) yields the part past the old length, so no
    character is sent twice.
    """

    def __init__(self) -> None:
        self.text = ""
        self.finish_reason: str | None = None

    def feed(self, text: str, finish_reason: str | None = None) -> str:
        if finish_reason and finish_reason != "None":
            self.finish_reason = finish_reason
        if text.startswith(self.text):
            delta = text[len(self.text) :]
        else:
            delta = text[len(self.text) :] if len(text) > len(self.text) else ""
        if len(text) >= len(self.text):
            self.text = text
        return delta


def generate_stream_path(model: str = LLM_MODEL, version: str | None = None) -> str:
    """The generate extension's streaming route (server-sent events, one response per event);
    with ``version``, that model version's (a canary served beside the stable one)."""
    if version:
        return f"/v2/models/{model}/versions/{version}/generate_stream"
    return f"/v2/models/{model}/generate_stream"


def generate_payload(prompt: str, sampling: Sampling, *, protocol: str = LLMAPI) -> dict[str, Any]:
    """The JSON body of a streamed generation: the model's tensors by name.

    ``protocol`` ``llmapi`` is TensorRT-LLM's LLM-API model (every target by default);
    ``ensemble`` is the legacy inflight-batcher ensemble that TensorRT engines (``engine.backend:
    tensorrt``, releases up to the last that ships trtllm-build) are served through.
    """
    if protocol == ENSEMBLE:
        legacy: dict[str, Any] = {
            "text_input": prompt,
            "max_tokens": int(sampling.max_tokens),
            "stream": True,
            "temperature": float(sampling.temperature or 0.0),
        }
        if sampling.stop:
            legacy["stop_words"] = list(sampling.stop)
        for name in ("top_k", "top_p", "frequency_penalty", "presence_penalty"):
            if (value := getattr(sampling, name)) is not None:
                legacy[name] = value
        if sampling.seed is not None:
            legacy["random_seed"] = int(sampling.seed)
        return legacy
    if protocol != LLMAPI:
        raise ValueError(f"unknown LLM protocol {protocol!r} (expected {LLMAPI} or {ENSEMBLE})")
    return {
        "text_input": prompt,
        "streaming": True,
        "return_finish_reason": True,
        **sampling.tensors(),
    }


def stream_event(line: str) -> tuple[str, str | None] | None:
    """(text_output, finish_reason) of one SSE line of ``generate_stream`` (None for other
    lines); raises BackendUnavailable on an error event."""
    if not line.startswith("data:"):
        return None
    event = json.loads(line[5:].strip() or "{}")
    if "error" in event:
        raise BackendUnavailable(f"triton: {event['error']}")
    text = event.get("text_output")
    if isinstance(text, list):
        text = "".join(str(x) for x in text)
    finish = event.get("finish_reason")
    if isinstance(finish, list):
        finish = str(finish[0]) if finish else None
    return (str(text) if text else "", str(finish) if finish is not None else None)


class EventDecoder:
    """SSE lines -> text deltas for a protocol: the LLM-API model sends the whole text so far
    (``TextStream``), the legacy ensemble one delta per event."""

    def __init__(self, protocol: str = LLMAPI) -> None:
        self.protocol = protocol
        self.stream = TextStream()

    @property
    def finish_reason(self) -> str | None:
        return self.stream.finish_reason

    def delta(self, line: str) -> str | None:
        event = stream_event(line)
        if event is None:
            return None
        text, finish = event
        if self.protocol == ENSEMBLE:
            self.stream.feed(self.stream.text + text, finish)
            return text or None
        return self.stream.feed(text, finish) or None
