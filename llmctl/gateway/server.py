"""The uvicorn server that runs the gateway app, with the connection timeouts slow clients need.

Why: uvicorn on its own lets one client hold a connection for as long as it likes by sending
nothing, by sending half a header block, or by declaring a body and trickling it (slowloris); a few
hundred such sockets exhaust the process. The limits are in ``LimitsConfig``:

- ``keep_alive_timeout_s``: uvicorn's ``timeout_keep_alive``, an idle connection after a
  response is closed.
- ``header_timeout_s``: uvicorn has no such setting, hence ``HeaderTimeoutH11Protocol`` below. A
  connection must deliver complete request headers within this many seconds of opening, or of its
  previous response completing; otherwise it is closed. uvicorn's keep-alive timer does not cover
  this: it is not armed on a new connection, and any byte received cancels it for good.
- ``body_timeout_s``: enforced where the body is read, ``Gateway.read_json`` (408, audited like
  every other refusal), not here: by then the request exists and has an audit record to end in.
- h11's incomplete-event bound (``MAX_INCOMPLETE_EVENT_BYTES``) caps how much of an unfinished
  header block is buffered; a longer one is a 400 from uvicorn.

When the header timer fires, a connection that has sent nothing of its next request is closed
silently, as uvicorn closes an idle keep-alive connection: there is nobody to tell, and an
unsolicited 408 on a reused connection makes some clients retry a request they never sent. One
that has started a request (header bytes buffered, none complete) gets ``408 Request Timeout``
with ``Connection: close`` and then the close (RFC 9110 section 15.5.9), so a slow but honest
client learns why. Neither case reaches the app, so neither has an audit record: there is no
request yet to audit.

The h11 implementation is forced, so behaviour does not depend on whether httptools is installed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.config import LifespanType
from uvicorn.protocols.http.h11_impl import H11Protocol

from llmctl.gateway.config import GatewayConfig

log = logging.getLogger("llmctl.gateway")

MAX_INCOMPLETE_EVENT_BYTES = 16 * 1024  # the longest unfinished request head h11 buffers


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for complete request headers.

    The timer is armed when the connection opens and again when a response completes (the next
    request's headers are then due); it is cancelled when h11 yields the ``Request`` event, i.e.
    when uvicorn starts a new request cycle. The deadline comes from the class attribute
    ``header_timeout_s``; ``protocol_class`` makes a subclass with it set.
    """

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: Any = None  # asyncio.TimerHandle while headers are awaited

    # -- the timer ------------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        started, _ = self.conn.trailing_data  # bytes of a request head not yet complete
        if started and self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE:
            log.debug(
                "closing %s: request headers incomplete after %gs (408)",
                self.client,
                self.header_timeout_s,
            )
            with contextlib.suppress(h11.LocalProtocolError):
                self._send_408()
        else:
            log.debug("closing %s: no request within %gs", self.client, self.header_timeout_s)
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _send_408(self) -> None:
        body = b"request headers not received in time\n"
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
        self.transport.write(self.conn.send(response) or b"")
        self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")

    # -- uvicorn's hooks ------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # h11 yielded a Request: its headers are complete
            self._cancel_header_timer()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_header_timer()  # the connection now belongs to the websocket protocol
        super().handle_websocket_upgrade(event)

    def on_response_complete(self) -> None:
        # Armed before uvicorn resumes reading: a pipelined request already buffered is parsed
        # inside super() and cancels it again at once.
        if not self.transport.is_closing():
            self._arm_header_timer()
        super().on_response_complete()


def protocol_class(header_timeout_s: float) -> type[HeaderTimeoutH11Protocol]:
    """A ``HeaderTimeoutH11Protocol`` subclass with its deadline set (uvicorn instantiates the
    class itself, one instance per connection, so the setting travels on the class)."""
    return type(
        "GatewayH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout_s": header_timeout_s}
    )


def build_server(
    app: Callable[..., Any],
    config: GatewayConfig,
    *,
    log_level: str | None = None,
    lifespan: LifespanType = "auto",
    timeout_graceful_shutdown: int = 5,
) -> uvicorn.Server:
    """The uvicorn server for ``app`` with the connection limits of ``config.limits``.

    ``log_level`` defaults to the config's; access logging is off (the audit trail and metrics
    record every request). Start it with ``server.run(sockets=[...])`` or ``await serve(...)``.
    """
    lim = config.limits
    return uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol_class(lim.header_timeout_s),
            # typed int, but uvicorn only hands it to loop.call_later: a float is fine
            timeout_keep_alive=lim.keep_alive_timeout_s,  # type: ignore[arg-type]
            h11_max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES,
            log_level=log_level or config.log_level,
            access_log=False,
            lifespan=lifespan,
            timeout_graceful_shutdown=timeout_graceful_shutdown,
        )
    )
