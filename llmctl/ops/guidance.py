"""What on-call reads for each alert of ``llmctl.ops.alerts``: what it means, what to check and
what to do, kept apart from the rules so each module reads as one thing.

Markdown, with placeholders that ``llmctl.ops.runbook`` fills with the target's commands (in
backticks) or a sentence where a command needs one: {status} {ask} {gateway_logs} {triton_logs}
{audit_verify} {metrics} {up} {ingest} {restart_gateway} {restart_triton} {scale}. Each entry of
an alert other than the burn-rate ones is (meaning, checks, actions).
"""

from __future__ import annotations

BURN_MEANING = {
    "Availability": "The service is failing requests that were not the caller's fault "
    "(outcomes unavailable, timeout, error, audit_unavailable) faster than the availability "
    "SLO allows: {spoken}.",
    "ErrorRate": "The share of failed requests (the same failures as availability, against the "
    "error-rate objective) is spending its budget at {spoken}.",
    "Latency": "Too many requests take longer than the latency p95 objective: {bad} requests "
    "spend the 5% a p95 allows at {spoken}.",
    "Ttft": "Too many requests wait longer than the TTFT p95 objective for their first token: "
    "{bad} requests spend the 5% a p95 allows at {spoken}.",
}
_ERROR_CHECKS = (
    "{status}: is every component up and ready; is one dead, hung, missing or stale?",
    "Requests by outcome on the dashboard (or {metrics}): `unavailable` and `timeout` point "
    "at Triton, `audit_unavailable` at the audit sink, `error` at the gateway itself.",
    "{gateway_logs}: the lines with `outcome=` of the failing requests and any traceback.",
    "{triton_logs}: model load failures, CUDA or out-of-memory errors.",
    "{ask}: does a real question get an answer with citations?",
)
_SLOW_CHECKS = (
    "The p95 latency, TTFT, retrieval and gateway-overhead panels: which part got slow?",
    "{status}: replicas ready versus planned; a Triton pod missing halves capacity.",
    "Triton queue time and pending requests (the LlmctlTritonQueueTimeHigh and "
    "LlmctlKvCacheNearlyFull alerts name saturation), GPU utilisation.",
    "{ask}: time one question end to end.",
)
BURN_CHECKS = {
    "Availability": _ERROR_CHECKS,
    "ErrorRate": _ERROR_CHECKS,
    "Latency": _SLOW_CHECKS,
    "Ttft": _SLOW_CHECKS,
}
_ERROR_ACTIONS = (
    "Triton down or restarting: {restart_triton}, then watch {status} until ready.",
    "Failures began with a change: [roll back](#roll-back) to the previous blueprint revision.",
    "Audit sink failing: see [LlmctlAuditSinkDown](#llmctlauditsinkdown).",
)
_SLOW_ACTIONS = (
    "Load above plan: scale Triton out ({scale}), then re-size with `llmctl size` before the "
    "next `llmctl up`.",
    "Retrieval slow: check the index volume and the embedder model in Triton.",
    "Slower since a change (engine, model, maxBatchSize): [roll back](#roll-back).",
)
BURN_ACTIONS = {
    "Availability": _ERROR_ACTIONS,
    "ErrorRate": _ERROR_ACTIONS,
    "Latency": _SLOW_ACTIONS,
    "Ttft": _SLOW_ACTIONS,
}
BURN_TAIL: dict[str, tuple[str, ...]] = {
    "page": ("Act now: at this rate the month's budget is gone within days.",),
    "ticket": ("Plan a fix this week; nothing pages yet, but the budget will not last the month.",),
}
QUEUE = (
    "Requests wait in Triton's scheduler longer than half the TTFT objective: the GPUs are "
    "saturated or the batch size is too small for the load.",
    (
        "Triton queue time and pending requests per model on the dashboard; GPU utilisation.",
        "{status}: are all Triton replicas ready, or is the autoscaler at its maximum?",
        "Requests per second against the plan of `llmctl size`.",
    ),
    (
        "Scale Triton out ({scale}); raise capacity.replicas.max if the autoscaler is pinned.",
        "Persistent: re-size (`llmctl size`), raise engine.maxBatchSize or choose a larger GPU, "
        "then {up}.",
    ),
)
KV = (
    "TensorRT-LLM has almost no free KV-cache blocks: long prompts or many concurrent streams; "
    "new requests queue until blocks free up.",
    (
        "KV-cache fraction, pending requests and TTFT on the dashboard.",
        "Prompt and output lengths against model.maxInputTokens and maxOutputTokens.",
        "{triton_logs}: scheduler messages about paused or evicted requests.",
    ),
    (
        "Scale Triton out ({scale}).",
        "Raise engine.kvCacheFreeGpuMemFraction or lower maxOutputTokens, rebuild the engine "
        "(`llmctl build`), then {up}.",
    ),
)
AUDIT_FAIL = (
    "The gateway could not write audit records. With audit required every affected answer was "
    "refused (503 audit_unavailable): no answer leaves without a trace.",
    (
        "{gateway_logs}: the sink's error (disk full, permissions, volume not mounted).",
        "Free space and permissions of the audit volume; {status}.",
        "{audit_verify}",
    ),
    (
        "Free space or fix the volume; the gateway recovers without a restart once the sink "
        "takes records (LlmctlAuditSinkDown resolves).",
        "Record the window of refused requests for the compliance owner.",
    ),
)
AUDIT_DOWN = (
    "The audit sink's probe fails. With audit required the gateway reports not ready and "
    "refuses answers until the sink is back.",
    AUDIT_FAIL[1],
    (
        "Fix the sink (space, permissions, mount); readiness returns by itself.",
        "Still down after the fix: {restart_gateway}.",
    ),
)
INDEX = (
    "The index the gateway serves has not changed for longer than allowed: answers may cite "
    "outdated policy.",
    (
        "When the source documents last changed, and whether the scheduled ingest ran.",
        "{status}: the index hash the gateway serves.",
    ),
    (
        "Re-ingest: {ingest}; the gateway picks up the new index without a restart.",
        "Documents really unchanged: note it on the ticket and close it.",
    ),
)
BREAKER = (
    "The gateway saw Triton time out and now fails every question fast with a 503 "
    "(`unavailable`) instead of queueing behind a dead backend; it closes after a probe succeeds.",
    (
        "{status}: is Triton alive, ready, with its models loaded?",
        "{triton_logs}: crashes, CUDA errors, out of memory, a model unloaded.",
        "GPU health of the node (`nvidia-smi` on it); Triton's pending requests.",
    ),
    (
        "Triton hung or dead: {restart_triton}; the breaker closes on its own afterwards.",
        "Started with a change: [roll back](#roll-back).",
    ),
)
