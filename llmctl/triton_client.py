"""The one Triton client: everything llmctl says to a Triton server, over HTTP or gRPC.

It speaks only the contract in docs/CONTRACTS.md (TensorRT-LLM's LLM-API model ``tensorrt_llm``
with its ``sampling_param_*`` tensors, model ``embedder``), so the gateway, ingestion, the targets, the gates and the benchmarks use it
unchanged against the local stand-in or a production Triton.

- gRPC (tritonclient; ``host:port``, a ``grpc://`` prefix is accepted): ``stream_generate`` and
  ``generate`` (decoupled models stream over gRPC), ``embed`` and ``aembed``, and ``ModelControl``
  (repository index, load/unload, readiness, the build key a loaded model carries);
- HTTP: ``TritonLLM``, the generate extension (``POST /v2/models/<m>/generate_stream``, server-sent
  events) on httpx's async client, so the gateway's event loop serves many streams without a
  thread each and a stopped Triton fails at connect time in milliseconds (the gateway's 503);
  ``http_health``, the readiness endpoints the smoke gate reads.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np

from llmctl.errors import BackendTimeout, BackendUnavailable, StackError
from llmctl.triton_protocol import (
    EMBED_MODEL,
    LLM_MODEL,
    LLMAPI,
    EventDecoder,
    Sampling,
    TextStream,
    generate_payload,
    generate_stream_path,
)

T = TypeVar("T")

_DONE = object()


def grpc_address(url: str) -> str:
    """``host:port`` from a gRPC address given with or without a scheme."""
    for prefix in ("grpc://", "http://", "https://"):
        if url.startswith(prefix):
            return url[len(prefix) :].rstrip("/")
    return url


def grpc_aio_client(url: str) -> Any:
    """A ``tritonclient.grpc.aio`` client (one HTTP/2 channel for every call of an event loop)."""
    grpc_module()  # the one-line install hint when tritonclient is missing
    import tritonclient.grpc.aio as grpc_aio

    return grpc_aio.InferenceServerClient(url=grpc_address(url))


def grpc_module() -> Any:
    """``tritonclient.grpc``, or a one-line StackError saying what to install."""
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


# LLM-API tensor -> (Triton datatype, numpy dtype) for the scalars generation sends.
_SCALARS = {
    "sampling_param_max_tokens": ("INT32", np.int32),
    "sampling_param_temperature": ("FP32", np.float32),
    "sampling_param_top_k": ("INT32", np.int32),
    "sampling_param_top_p": ("FP32", np.float32),
    "sampling_param_frequency_penalty": ("FP32", np.float32),
    "sampling_param_presence_penalty": ("FP32", np.float32),
    "sampling_param_seed": ("UINT64", np.uint64),
    "streaming": ("BOOL", bool),
    "return_finish_reason": ("BOOL", bool),
}


def generation_inputs(prompt: str, sampling: Sampling, *, stream: bool = True) -> list[Any]:
    """The LLM-API model's input tensors for one prompt (no batch dimension: the model's
    ``max_batch_size`` is 0, so every tensor has exactly its configured shape)."""
    g = grpc_module()
    inputs = [
        _input(g, "text_input", np.array([prompt.encode("utf-8")], dtype=np.object_), "BYTES")
    ]
    values = {**sampling.tensors(), "streaming": stream, "return_finish_reason": True}
    for name, value in values.items():
        if name == "sampling_param_stop":
            words = np.array([w.encode("utf-8") for w in value], dtype=np.object_)
            inputs.append(_input(g, name, words, "BYTES"))
            continue
        datatype, dtype = _SCALARS[name]
        inputs.append(_input(g, name, np.array([value], dtype=dtype), datatype))
    return inputs


def _first_string(value: Any) -> str | None:
    if value is None:
        return None
    items = value.reshape(-1) if hasattr(value, "reshape") else list(value)
    if len(items) == 0:
        return None
    item = items[0]
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


def stream_generate(
    url: str,
    prompt: str,
    max_tokens: int = 128,
    temperature: float | None = None,
    *,
    model: str = LLM_MODEL,
    timeout_s: float = 300.0,
    on_finish: Callable[[str | None], None] | None = None,
    **sampling: Any,
) -> Iterator[str]:
    """Yield text deltas as Triton streams them (gRPC); raise StackError on a server-side error.

    ``sampling`` takes ``Sampling``'s other fields (top_k, top_p, frequency_penalty,
    presence_penalty, seed, stop). ``on_finish`` gets the model's finish reason (``stop``,
    ``length``, ``cancelled``) when the stream ends.

    ``prompt`` is the complete, already formatted prompt (see ``llmctl.local.prompt``). Closing the
    iterator early cancels the request on the server.
    """
    g = grpc_module()
    inbox: queue.Queue[Any] = queue.Queue()
    decoded = TextStream()
    params = Sampling(max_tokens=max_tokens, temperature=temperature, **sampling)

    def on_response(result: Any, error: Any) -> None:
        if error is not None:
            inbox.put(error)
            return
        response = result.get_response()
        flags = response.parameters
        final = flags["triton_final_response"] if "triton_final_response" in flags else None
        if response.outputs:
            names = {o.name for o in response.outputs}
            text = _first_string(result.as_numpy("text_output")) or ""
            finish = (
                _first_string(result.as_numpy("finish_reason"))
                if "finish_reason" in names
                else None
            )
            inbox.put(("text", text, finish))
        if final is not None and final.bool_param:
            inbox.put(_DONE)

    client = g.InferenceServerClient(url=grpc_address(url))
    finished = False
    try:
        client.start_stream(callback=on_response)
        client.async_stream_infer(
            model,
            generation_inputs(prompt, params),
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
                if on_finish is not None:
                    on_finish(decoded.finish_reason)
                return
            if isinstance(item, tuple):
                if delta := decoded.feed(item[1], item[2]):
                    yield delta
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


async def with_deadline(call: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await a ``tritonclient.grpc.aio`` call under a deadline without cancelling it from
    outside the call.

    Why: cancelling such a call from an enclosing scope (``anyio.fail_after``) surfaces as a
    bare ``CancelledError`` that the scope does not turn into a timeout, so a hung Triton once
    looked like a client disconnect (audited 499) and ended as a plain-text 500. Here the call
    runs as its own task; past the deadline it is cancelled on the side and the caller gets
    ``BackendTimeout``. A caller that is itself cancelled cancels the call too.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_consume)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise BackendTimeout(f"{what}: no answer within {timeout_s:g} s")
    if task.cancelled():
        raise BackendUnavailable(f"{what}: the call was cancelled")
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


async def aembed(
    client: Any, texts: Sequence[str], *, model: str = EMBED_MODEL, timeout_s: float = 300.0
) -> np.ndarray:
    """``embed`` for an event loop: one request on a ``tritonclient.grpc.aio`` client.

    One aio client multiplexes every concurrent call on one HTTP/2 channel, where the blocking
    client needs a channel per thread (tritonclient's clients are not thread-safe) and opening
    one cost ~180 ms under load.
    """
    g = grpc_module()
    try:
        result = await with_deadline(
            client.infer(
                model,
                [_text_input(g, texts)],
                outputs=[g.InferRequestedOutput("embedding")],
                client_timeout=timeout_s + 1.0,  # the deadline below decides; this is a backstop
            ),
            timeout_s,
            model,
        )
    except BackendTimeout:
        raise
    except Exception as exc:  # tritonclient raises InferenceServerException
        if "DEADLINE_EXCEEDED" in str(getattr(exc, "status", lambda: "")()) or (
            "Deadline Exceeded" in str(exc)
        ):
            raise BackendTimeout(f"{model}: no answer within {timeout_s:g} s") from exc
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
    g = grpc_module()
    own = client is None
    cli: Any = g.InferenceServerClient(url=grpc_address(url)) if own else client
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


# -- model control (gRPC) -------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One row of Triton's repository index."""

    name: str
    version: str
    state: str  # READY | UNAVAILABLE | LOADING | UNLOADING | "" (never loaded)
    reason: str


class ControlError(StackError):
    """Triton refused a model-control request; ``unreachable`` when it did not answer at all."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


_UNREACHABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


class ModelControl:
    """Triton's model-repository extension and readiness, through tritonclient's gRPC client.

    One client per instance; create one per thread (tritonclient's clients are not thread-safe).
    """

    def __init__(self, url: str) -> None:
        self._client = grpc_module().InferenceServerClient(url=grpc_address(url))

    def __enter__(self) -> ModelControl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # tritonclient raises InferenceServerException
            status = str(exc.status()) if hasattr(exc, "status") else ""
            message = exc.message() if hasattr(exc, "message") else str(exc)
            first = (str(message).strip().splitlines() or [type(exc).__name__])[0]
            raise ControlError(f"{what}: {first}", unreachable=status in _UNREACHABLE) from exc

    def index(self, timeout_s: float = 5.0) -> list[ModelEntry]:
        response = self._call(
            "repository index", self._client.get_model_repository_index, client_timeout=timeout_s
        )
        return [ModelEntry(m.name, m.version, m.state, m.reason) for m in response.models]

    def build_key(self, model: str, timeout_s: float = 5.0) -> str | None:
        """The ``llmctl_build_key`` parameter of the loaded config: which build is serving."""
        response = self._call(
            f"config of {model}", self._client.get_model_config, model, client_timeout=timeout_s
        )
        params = response.config.parameters
        return params["llmctl_build_key"].string_value if "llmctl_build_key" in params else None

    def load(self, model: str, timeout_s: float) -> None:
        self._call(f"load {model}", self._client.load_model, model, client_timeout=timeout_s)

    def unload(self, model: str, timeout_s: float = 30.0) -> None:
        self._call(f"unload {model}", self._client.unload_model, model, client_timeout=timeout_s)

    def model_ready(self, model: str, timeout_s: float = 5.0, version: str = "") -> bool:
        try:
            return bool(
                self._client.is_model_ready(model, model_version=version, client_timeout=timeout_s)
            )
        except Exception:
            return False


# -- HTTP ------------------------------------------------------------------------------------------
HEALTH_LIVE = "/v2/health/live"
HEALTH_READY = "/v2/health/ready"


def model_ready_path(model: str, version: str | None = None) -> str:
    if version:
        return f"/v2/models/{model}/versions/{version}/ready"
    return f"/v2/models/{model}/ready"


def http_stream_generate(
    client: httpx.Client,
    prompt: str,
    max_tokens: int,
    *,
    model: str = LLM_MODEL,
    protocol: str = LLMAPI,
    **sampling: Any,
) -> Iterator[str]:
    """``TritonLLM.stream`` for blocking callers (benchmarks) on a given ``httpx.Client``."""
    payload = generate_payload(
        prompt, Sampling(max_tokens=max_tokens, **sampling), protocol=protocol
    )
    decoder = EventDecoder(protocol)
    with client.stream("POST", generate_stream_path(model), json=payload) as response:
        if response.status_code != 200:
            raise BackendUnavailable(f"triton {model}: HTTP {response.status_code}")
        for line in response.iter_lines():
            if (delta := decoder.delta(line)) is not None:
                yield delta


def http_health(
    base_url: str, models: Sequence[str] = (), timeout_s: float = 5.0
) -> dict[str, tuple[int | None, str]]:
    """``server`` and each model's readiness over HTTP: name -> (status or None, detail)."""
    paths = {"server": HEALTH_READY} | {m: model_ready_path(m) for m in models}
    out: dict[str, tuple[int | None, str]] = {}
    for name, path in paths.items():
        try:
            r = httpx.get(base_url.rstrip("/") + path, timeout=timeout_s)
            out[name] = (r.status_code, r.text[:200])
        except httpx.HTTPError as exc:
            out[name] = (None, f"{type(exc).__name__}: {exc}")
    return out


class TritonLLM:
    """Streaming generation through Triton's HTTP generate extension."""

    def __init__(
        self,
        base_url: str,
        model: str = LLM_MODEL,
        *,
        protocol: str = LLMAPI,
        version: str | None = None,
        connect_timeout_s: float = 2.0,
        token_timeout_s: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.protocol = protocol
        self.version = version
        self._settings = (connect_timeout_s, token_timeout_s, max_connections)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(token_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    def for_version(self, version: str | None, base_url: str | None = None) -> TritonLLM:
        """A client of another version of the same model, or of the same model on another
        Triton (``base_url``): a canary beside the stable one."""
        connect, token, conns = self._settings
        return TritonLLM(
            base_url or self.base_url,
            self.model,
            protocol=self.protocol,
            version=version,
            connect_timeout_s=connect,
            token_timeout_s=token,
            max_connections=conns,
        )

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0.0,
        top_k: int | None = None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
        seed: int | None = None,
        on_finish: Callable[[str | None], None] | None = None,
    ) -> AsyncIterator[str]:
        """Text deltas; ``on_finish`` gets the model's finish reason (``stop``, ``length``,
        ``cancelled``; None when the model did not say) once the stream has ended."""
        sampling = Sampling(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            seed=seed,
            stop=tuple(stop_words),
        )
        payload = generate_payload(prompt, sampling, protocol=self.protocol)
        decoder = EventDecoder(self.protocol)
        url = generate_stream_path(self.model, self.version)
        try:
            async with self._client.stream("POST", url, json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode("utf-8", "replace")
                    kind = BackendUnavailable if response.status_code >= 500 else RuntimeError
                    raise kind(f"triton {self.model}: HTTP {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if (delta := decoder.delta(line)) is not None:
                        yield delta
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"triton {self.model}: no answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"triton {self.model}: {type(exc).__name__}: {exc}") from exc
        if on_finish is not None:
            on_finish(decoder.finish_reason)

    async def ready(self) -> tuple[bool, str]:
        try:
            r = await self._client.get(HEALTH_READY, timeout=2.0)
            if r.status_code != 200:
                return False, f"triton not ready (HTTP {r.status_code})"
            r = await self._client.get(model_ready_path(self.model, self.version), timeout=2.0)
            if r.status_code != 200:
                return False, f"triton model {self.model} not ready (HTTP {r.status_code})"
        except httpx.HTTPError as exc:
            return False, f"triton unreachable at {self.base_url} ({type(exc).__name__})"
        return True, ""

    async def aclose(self) -> None:
        await self._client.aclose()
