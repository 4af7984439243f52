"""Thin helpers over tritonclient: stream a generation, embed a batch.

They speak only the contract in docs/CONTRACTS.md (model ``ensemble`` with TensorRT-LLM tensors,
model ``embedder``), so the gateway, ingestion, smoke tests and benchmarks use them unchanged
against the local stand-in or a production TensorRT-LLM Triton. Both take the Triton **gRPC**
address (``host:port``; a ``grpc://`` prefix is accepted): decoupled models stream only over gRPC.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from llmctl.errors import StackError

LLM_MODEL = "ensemble"
EMBED_MODEL = "embedder"
_DONE = object()


def _address(url: str) -> str:
    for prefix in ("grpc://", "http://", "https://"):
        if url.startswith(prefix):
            return url[len(prefix) :].rstrip("/")
    return url


def _grpc():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as exc:  # pragma: no cover - environment problem
        raise StackError(
            "tritonclient is not installed: pip install 'tritonclient[grpc]' (part of llmctl[local])"
        ) from exc
    return grpcclient


def _input(grpcclient: Any, name: str, value: np.ndarray, datatype: str) -> Any:
    tensor = grpcclient.InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor


def generation_inputs(
    prompt: str,
    max_tokens: int,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
    repetition_penalty: float | None = None,
    stream: bool = True,
) -> list[Any]:
    """The ensemble's input tensors for one prompt (batch of one, as TensorRT-LLM expects)."""
    g = _grpc()
    inputs = [
        _input(g, "text_input", np.array([[prompt.encode("utf-8")]], dtype=np.object_), "BYTES"),
        _input(g, "max_tokens", np.array([[max_tokens]], dtype=np.int32), "INT32"),
        _input(g, "stream", np.array([[stream]], dtype=bool), "BOOL"),
    ]
    if temperature is not None:
        inputs.append(_input(g, "temperature", np.array([[temperature]], np.float32), "FP32"))
    if top_k is not None:
        inputs.append(_input(g, "top_k", np.array([[top_k]], np.int32), "INT32"))
    if top_p is not None:
        inputs.append(_input(g, "top_p", np.array([[top_p]], np.float32), "FP32"))
    if repetition_penalty is not None:
        inputs.append(
            _input(g, "repetition_penalty", np.array([[repetition_penalty]], np.float32), "FP32")
        )
    if seed is not None:
        inputs.append(_input(g, "random_seed", np.array([[seed]], np.uint64), "UINT64"))
    if stop:
        words = np.array([[w.encode("utf-8") for w in stop]], dtype=np.object_)
        inputs.append(_input(g, "stop_words", words, "BYTES"))
    return inputs


def stream_generate(
    url: str,
    prompt: str,
    max_tokens: int = 128,
    temperature: float | None = None,
    *,
    top_k: int | None = None,
    top_p: float | None = None,
    stop: Sequence[str] = (),
    seed: int | None = None,
    repetition_penalty: float | None = None,
    model: str = LLM_MODEL,
    timeout_s: float = 300.0,
) -> Iterator[str]:
    """Yield text deltas as Triton streams them; raise StackError on a server-side error.

    ``prompt`` is the complete, already formatted prompt (see ``llmctl.local.prompt``). Closing the
    iterator early cancels the request on the server.
    """
    g = _grpc()
    inbox: queue.Queue[Any] = queue.Queue()

    def on_response(result: Any, error: Any) -> None:
        if error is not None:
            inbox.put(error)
            return
        response = result.get_response()
        params = response.parameters
        final = params["triton_final_response"] if "triton_final_response" in params else None
        if response.outputs:
            out = result.as_numpy("text_output")
            if out is not None:
                for item in out.reshape(-1):
                    inbox.put(
                        item.decode("utf-8", errors="replace")
                        if isinstance(item, bytes)
                        else str(item)
                    )
        if final is not None and final.bool_param:
            inbox.put(_DONE)

    client = g.InferenceServerClient(url=_address(url))
    finished = False
    try:
        client.start_stream(callback=on_response)
        client.async_stream_infer(
            model,
            generation_inputs(
                prompt,
                max_tokens,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                stop=stop,
                seed=seed,
                repetition_penalty=repetition_penalty,
                stream=True,
            ),
            request_id=uuid.uuid4().hex,
            enable_empty_final_response=True,
        )
        while True:
            try:
                item = inbox.get(timeout=timeout_s)
            except queue.Empty as exc:
                raise StackError(f"{model}: no response within {timeout_s:g} s") from exc
            if item is _DONE:
                finished = True
                return
            if isinstance(item, str):
                if item:
                    yield item
                continue
            message = item.message() if hasattr(item, "message") else str(item)
            raise StackError(f"{model}: {message}")
    finally:
        try:
            client.stop_stream(cancel_requests=not finished)
        except TypeError:  # older tritonclient without cancel_requests
            client.stop_stream()
        except Exception:  # the stream may already be broken; closing is best effort
            pass
        client.close()


def generate(url: str, prompt: str, max_tokens: int = 128, **kwargs: Any) -> str:
    """The whole completion as one string (streamed underneath)."""
    return "".join(stream_generate(url, prompt, max_tokens, **kwargs))


def _text_input(g: Any, texts: Sequence[str]) -> Any:
    data = np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)
    return _input(g, "text", data, "BYTES")


async def aembed(
    client: Any, texts: Sequence[str], *, model: str = EMBED_MODEL, timeout_s: float = 300.0
) -> np.ndarray:
    """``embed`` for an event loop: one request on a ``tritonclient.grpc.aio`` client.

    One aio client multiplexes every concurrent call on one HTTP/2 channel, where the blocking
    client needs a channel per thread (tritonclient's clients are not thread-safe) and opening
    one cost ~180 ms under load.
    """
    g = _grpc()
    try:
        result = await client.infer(
            model,
            [_text_input(g, texts)],
            outputs=[g.InferRequestedOutput("embedding")],
            client_timeout=timeout_s,
        )
    except Exception as exc:  # tritonclient raises InferenceServerException
        raise StackError(f"{model}: {exc}") from exc
    return result.as_numpy("embedding").astype(np.float32, copy=False)


def embed(
    url: str,
    texts: Sequence[str],
    *,
    model: str = EMBED_MODEL,
    batch_size: int = 64,
    client: Any | None = None,
    timeout_s: float = 300.0,
) -> np.ndarray:
    """Embed ``texts`` -> float32 array [len(texts), dim] (L2-normalised by the model).

    Sends requests of at most ``batch_size`` texts (the model's max_batch_size); pass a ``client``
    (tritonclient.grpc.InferenceServerClient) to reuse a connection across calls.
    """
    g = _grpc()
    own = client is None
    cli = g.InferenceServerClient(url=_address(url)) if own else client
    try:
        parts = []
        for start in range(0, len(texts), batch_size):
            tensor = _text_input(g, texts[start : start + batch_size])
            try:
                result = cli.infer(
                    model,
                    [tensor],
                    outputs=[g.InferRequestedOutput("embedding")],
                    client_timeout=timeout_s,
                )
            except Exception as exc:  # tritonclient raises InferenceServerException
                raise StackError(f"{model}: {exc}") from exc
            parts.append(result.as_numpy("embedding"))
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)
    finally:
        if own:
            cli.close()
