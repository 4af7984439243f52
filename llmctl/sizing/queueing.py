"""Queueing arithmetic for TTFT under load: a new request's prefill waits for the prefills ahead.

In-flight batching with chunked prefill gives every engine step a token budget
(``max_num_tokens``) shared by the decode tokens of the sequences in flight and the prompt chunks
of new requests, scheduled first come first served. A request arriving while another prompt is
being prefilled waits for that prompt's remaining chunks (and any queued before it) before its
own first chunk enters a step; arriving while only decodes run, it waits for the current step to
end. Prefills are therefore an M/G/1 queue whose "service" is the extra time each prompt adds to
the steps it rides in (its marginal cost, not the whole step: the decodes run anyway) plus the
share of those steps' decode time its tokens take from the token budget (a 5,000-token prompt
holds most of an 8,192-token step; a 200-token one hardly any), which is why TTFT grows at
moderate load long before the KV cache is full.

Pure functions, no model knowledge: ``performance`` supplies the service times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Tail probability the p95 figures are computed at.
P95_TAIL = 0.05


@dataclass(frozen=True)
class PrefillWait:
    """Waiting time of a new request before its first prompt chunk is scheduled (seconds)."""

    mean_s: float
    p95_s: float
    utilisation: float  # share of time the engine spends on prefill work (rho)

    @property
    def stable(self) -> bool:
        return self.utilisation < 1.0


def prefill_wait(rate_per_s: float, service_s: float, step_s: float) -> PrefillWait:
    """Mean and p95 wait of a Poisson stream of prefills, each adding ``service_s`` of work, on an
    engine whose decode-only steps last ``step_s``.

    Pollaczek-Khinchine for deterministic service (fixed prompt length): ``W = rho S / 2(1-rho)``,
    which includes the residual of a prefill already running; an arrival that finds none waits
    on average half a decode step for the step boundary. The p95 uses the standard exponential
    tail of M/G/1 waits, ``P(W > t) ~ rho exp(-rho t / W)``: with probability ``1 - rho`` a request
    does not queue at all, so the p95 is zero queueing until ``rho`` passes 5%.
    """
    rho = rate_per_s * service_s
    if rho >= 1.0:
        return PrefillWait(math.inf, math.inf, rho)
    queue = rho * service_s / (2.0 * (1.0 - rho)) if rho > 0 else 0.0
    boundary = (1.0 - rho) * step_s / 2.0
    tail = 0.0
    if rho > P95_TAIL and queue > 0:
        tail = queue / rho * math.log(rho / P95_TAIL)
    return PrefillWait(queue + boundary, tail + (1.0 - P95_TAIL) * step_s, rho)
