"""What keeps the gateway honest and responsive when its backends or its callers misbehave.

- ``Pools``: worker-thread budgets by purpose. Blocking calls (audit fsyncs, JWKS fetches, index
  searches, readiness checks) each get their own ``CapacityLimiter``, so a hung backend that
  parks every index search cannot take the threads that audit writes and authentication need;
  without this, about 40 parked readiness probes once starved the whole gateway (even a 401
  waited 15 s).
- ``Breaker``: after a Triton call times out or fails, later asks fail at once with 503 until a
  bounded health probe succeeds, instead of each waiting out its own timeout. A busy but healthy
  Triton answers its health endpoint at once, so the breaker closes again immediately.
- ``Readiness``: ``/readyz`` runs at most one round of bounded checks at a time and reuses the
  result for a second; a probe never waits longer than its deadline and never holds a worker.
- ``UnauthenticatedGuard``: requests that fail authentication are rate-limited per client
  address, and past the limit only the first refusal per address and window is recorded, with
  the count of the ones before it: a flood of anonymous requests cannot push the retained audit
  window out.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio import CapacityLimiter

from llmctl.gateway.ratelimit import TokenBucketLimiter

Check = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class Pools:
    """Thread budgets per purpose (anyio starts threads as needed; each limiter caps its own)."""

    audit: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(16))
    auth: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(8))
    index: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(16))
    probe: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(2))
    # audit reads scan the trail (years of it): two at a time, never the writers' threads
    audit_read: CapacityLimiter = field(default_factory=lambda: CapacityLimiter(2))


async def bounded(check: Check, timeout_s: float, what: str) -> tuple[bool, str]:
    """Run one readiness check under a deadline; an exception or a timeout is "not ready"."""
    try:
        with anyio.fail_after(timeout_s):
            return await check()
    except TimeoutError:
        return False, f"{what}: no answer within {timeout_s:g} s"
    except Exception as exc:  # a probe must report, never raise
        return False, f"{what}: {type(exc).__name__}"


class Breaker:
    """Open after a backend failure; closed again by the first probe that succeeds.

    ``allow()`` never waits. While the breaker is open, one background task probes the backend
    every ``probe_every_s`` (each probe bounded by ``probe_timeout_s``), so it closes within
    about a second of the backend's return, with or without traffic.
    """

    def __init__(self, probe: Check, *, probe_timeout_s: float = 2.0, probe_every_s: float = 1.0):
        self._probe = probe
        self.probe_timeout_s = probe_timeout_s
        self.probe_every_s = probe_every_s
        self.reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._trips = 0  # a probe that started before the latest trip cannot close it
        self.on_change: Callable[[bool], None] = lambda is_open: None

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    def trip(self, reason: str) -> None:
        """Open (from the event loop, where the failure was seen) and start probing."""
        if self.reason is None:
            self.on_change(True)
        self.reason = reason
        self._trips += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe_until_closed())

    def close(self) -> None:
        if self.reason is not None:
            self.on_change(False)
        self.reason = None

    def allow(self) -> str | None:
        """None: go ahead; else the reason to refuse at once."""
        return self.reason

    async def _probe_until_closed(self) -> None:
        while self.reason is not None:
            await asyncio.sleep(self.probe_every_s)
            trips = self._trips
            ok, _ = await bounded(self._probe, self.probe_timeout_s, "probe")
            if ok and trips == self._trips:
                self.close()

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class Readiness:
    """Single-flight, cached, bounded readiness: many concurrent probes cost one round."""

    def __init__(
        self, checks: dict[str, Check], *, timeout_s: float = 2.0, ttl_s: float = 1.0
    ) -> None:
        self.checks = checks
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._result: tuple[float, bool, dict[str, str]] | None = None
        self._task: asyncio.Task[tuple[bool, dict[str, str]]] | None = None

    async def check(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        if self._result is not None and now - self._result[0] < self.ttl_s:
            return self._result[1], self._result[2]
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._round())
        try:
            with anyio.fail_after(self.timeout_s + 0.5):
                ok, details = await asyncio.shield(self._task)
        except TimeoutError:
            return False, {"checks": f"readiness checks did not finish in {self.timeout_s:g} s"}
        self._result = (time.monotonic(), ok, details)
        return ok, details

    async def _round(self) -> tuple[bool, dict[str, str]]:
        names = list(self.checks)
        results = await asyncio.gather(*(bounded(self.checks[n], self.timeout_s, n) for n in names))
        details = {n: (detail or "ready") for n, (_, detail) in zip(names, results, strict=True)}
        return all(ok for ok, _ in results), details


class UnauthenticatedGuard:
    """Rate limit and record-suppression for requests that fail authentication, by address."""

    def __init__(self, requests_per_minute: float, burst: int, window_s: float = 60.0) -> None:
        self.limiter = TokenBucketLimiter(requests_per_minute, burst)
        self.window_s = window_s
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # address -> (window start, suppressed)

    def admit(self, address: str) -> tuple[bool, float]:
        """(allowed, seconds to wait) for one more unauthenticated request from ``address``."""
        return self.limiter.acquire(address)

    def record_refusal(self, address: str) -> tuple[bool, int]:
        """(write a record?, refusals counted but not recorded since the last record)."""
        now = time.monotonic()
        with self._lock:
            start, suppressed = self._windows.get(address, (-math.inf, 0))
            if now - start >= self.window_s:
                self._windows[address] = (now, 0)
                if len(self._windows) > 100_000:
                    self._evict(now)
                return True, suppressed
            self._windows[address] = (start, suppressed + 1)
            return False, suppressed + 1

    def _evict(self, now: float) -> None:
        for key, (start, _) in list(self._windows.items()):
            if now - start >= self.window_s:
                del self._windows[key]


def retry_after(wait: float) -> str:
    return "3600" if math.isinf(wait) else str(max(1, math.ceil(wait)))
