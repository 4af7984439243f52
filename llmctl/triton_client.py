"""The one Triton client: everything llmctl says to a Triton server, over HTTP or gRPC.

It speaks only the contract in docs/CONTRACTS.md (model ``ensemble`` with TensorRT-LLM tensors,
model ``embedder``), so the gateway, ingestion, the targets, the gates and the benchmarks use it
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
import json
import queue
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np

from llmctl.errors import BackendTimeout, BackendUnavailable, StackError

T = TypeVar("T")

LLM_MODEL = "ensemble"
EMBED_MODEL = "embedder"
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
    g = grpc_module()
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
    model: str = LLM_MODEL,
    timeout_s: float = 300.0,
    **sampling: Any,
) -> Iterator[str]:
    """Yield text deltas as Triton streams them; raise StackError on a server-side error.

    ``sampling`` takes ``generation_inputs``' keywords (top_k, top_p, stop, seed,
    repetition_penalty).

    ``prompt`` is the complete, already formatted prompt (see ``llmctl.local.prompt``). Closing the
    iterator early cancels the request on the server.
    """
    g = grpc_module()
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

    client = g.InferenceServerClient(url=grpc_address(url))
    finished = False
    try:
        client.start_stream(callback=on_response)
        client.async_stream_infer(
            model,
            generation_inputs(prompt, max_tokens, temperature=temperature, **sampling),
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

    def model_ready(self, model: str, timeout_s: float = 5.0) -> bool:
        try:
            return bool(self._client.is_model_ready(model, client_timeout=timeout_s))
        except Exception:
            return False


# -- HTTP ------------------------------------------------------------------------------------------
HEALTH_LIVE = "/v2/health/live"
HEALTH_READY = "/v2/health/ready"


def model_ready_path(model: str) -> str:
    return f"/v2/models/{model}/ready"


def generate_stream_path(model: str = LLM_MODEL) -> str:
    """The generate extension's streaming route (server-sent events, one delta per event)."""
    return f"/v2/models/{model}/generate_stream"


def generate_payload(
    prompt: str, max_tokens: int, *, temperature: float = 0.0, stop_words: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON body of a streamed generation: the ensemble's tensors by name."""
    payload: dict[str, Any] = {
        "text_input": prompt,
        "max_tokens": int(max_tokens),
        "stream": True,
        "temperature": float(temperature),
    }
    if stop_words:
        payload["stop_words"] = list(stop_words)
    return payload


def stream_event_delta(line: str) -> str | None:
    """The text delta of one SSE line of ``generate_stream`` (None for other lines); raises
    BackendUnavailable on an error event."""
    if not line.startswith("data:"):
        return None
    event = json.loads(line[5:].strip() or "{}")
    if "error" in event:
        raise BackendUnavailable(f"triton: {event['error']}")
    delta = event.get("text_output")
    if isinstance(delta, list):
        delta = "".join(str(x) for x in delta)
    return str(delta) if delta else None


def http_stream_generate(
    client: httpx.Client, prompt: str, max_tokens: int, *, model: str = LLM_MODEL, **options: Any
) -> Iterator[str]:
    """``TritonLLM.stream`` for blocking callers (benchmarks) on a given ``httpx.Client``."""
    payload = generate_payload(prompt, max_tokens, **options)
    with client.stream("POST", generate_stream_path(model), json=payload) as response:
        if response.status_code != 200:
            raise BackendUnavailable(f"triton {model}: HTTP {response.status_code}")
        for line in response.iter_lines():
            if (delta := stream_event_delta(line)) is not None:
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
        model: str = "ensemble",
        *,
        connect_timeout_s: float = 2.0,
        token_timeout_s: float = 30.0,
        max_connections: int = 256,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(token_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=64),
        )

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        payload = generate_payload(
            prompt, max_tokens, temperature=temperature, stop_words=stop_words
        )
        url = generate_stream_path(self.model)
        try:
            async with self._client.stream("POST", url, json=payload) as response:
                if response.status_code != 200:
                    body = (await response.aread())[:300].decode("utf-8", "replace")
                    kind = BackendUnavailable if response.status_code >= 500 else RuntimeError
                    raise kind(f"triton {self.model}: HTTP {response.status_code}: {body}")
                async for line in response.aiter_lines():
                    if (delta := stream_event_delta(line)) is not None:
                        yield delta
        except httpx.TimeoutException as exc:
            raise BackendTimeout(
                f"triton {self.model}: no answer in time ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"triton {self.model}: {type(exc).__name__}: {exc}") from exc

    async def ready(self) -> tuple[bool, str]:
        try:
            r = await self._client.get(HEALTH_READY, timeout=2.0)
            if r.status_code != 200:
                return False, f"triton not ready (HTTP {r.status_code})"
            r = await self._client.get(model_ready_path(self.model), timeout=2.0)
            if r.status_code != 200:
                return False, f"triton model {self.model} not ready (HTTP {r.status_code})"
        except httpx.HTTPError as exc:
            return False, f"triton unreachable at {self.base_url} ({type(exc).__name__})"
        return True, ""

    async def aclose(self) -> None:
        await self._client.aclose()
