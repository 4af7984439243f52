"""Per-subject token bucket (``network.rate_limit``): ``burst`` at once, refilled continuously.

In-process state: each gateway replica limits on its own, so N replicas allow N times the rate.
That is the usual trade for a stateless gateway; the blueprint's limit protects Triton from one
noisy caller, not billing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucketLimiter:
    """Thread-safe; idle buckets are dropped so memory is bounded by recently active subjects."""

    def __init__(
        self,
        requests_per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = 100_000,
    ) -> None:
        self.rate = max(requests_per_minute, 0.0) / 60.0
        self.burst = max(int(burst), 1)
        self._clock = clock
        self._max_subjects = max_subjects
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, last refill)

    def acquire(self, subject: str) -> tuple[bool, float]:
        """Take one token; returns (allowed, seconds until one is available when refused)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(subject, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[subject] = (tokens - 1.0, now)
                if len(self._buckets) > self._max_subjects:
                    self._evict(now)
                return True, 0.0
            self._buckets[subject] = (tokens, now)
            wait = math.inf if self.rate <= 0 else (1.0 - tokens) / self.rate
            return False, wait

    def _evict(self, now: float) -> None:
        # A bucket that would be full again carries no state worth keeping.
        full_after = self.burst / self.rate if self.rate > 0 else math.inf
        for key, (_, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
