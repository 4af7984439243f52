"""The on-call runbook of one blueprint's target, in Markdown (``llmctl runbook``).

Generated, never hand-written: the SLOs, budgets and alerts come from the same objects as the
rules Prometheus evaluates (``llmctl.ops.alerts``), the names and addresses from the target's
plan, so a runbook cannot describe an alert that does not exist or miss one that does. Each
alert's section heading is the alert's name, which makes its anchor the ``runbook_url`` the
rule's annotation points at. The output depends only on the blueprint (no time, no paths of this
machine), so a committed copy can be checked against a fresh one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmctl.ops.alerts import (
    CALLER_FAULTS,
    DEFAULT_INDEX_MAX_AGE_S,
    GOOD_OUTCOMES,
    SERVER_ERRORS,
    SLO_DAYS,
    Alert,
    alerts,
    burn_slos,
    runbook_path,
    series_selector,
)

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

MINUTES_PER_SLO_PERIOD = SLO_DAYS * 24 * 60


@dataclass(frozen=True)
class Commands:
    """The target's commands that fill the alerts' runbook placeholders."""

    status: str
    ask: str
    gateway_logs: str
    triton_logs: str
    audit_verify: str
    metrics: str
    up: str
    ingest: str
    restart_gateway: str
    restart_triton: str
    scale: str
    #: fields that hold a sentence instead of a command (not put in backticks)
    prose: frozenset[str] = frozenset()

    def fill(self, text: str) -> str:
        values = {k: v for k, v in self.__dict__.items() if k != "prose"}
        return text.format(**{k: v if k in self.prose else f"`{v}`" for k, v in values.items()})


def _llmctl(verb: str, target: str, *extra: str) -> str:
    return " ".join(["llmctl", verb, '"$BLUEPRINT"', *extra, "-t", target])


def _local_commands(bp: Blueprint, target: str) -> Commands:
    state = f"$LLMCTL_HOME/{bp.name}/{target}"
    restart = f"{_llmctl('down', target)} && {_llmctl('up', target, '-y')}"
    return Commands(
        status=_llmctl("status", target),
        ask=_llmctl("ask", target, '"a question the documents answer"'),
        gateway_logs=f"tail -n 200 {state}/logs/gateway.log",
        triton_logs=f"tail -n 200 {state}/logs/triton.log",
        audit_verify=f"`{_llmctl('audit verify', target)}`: is the trail's hash chain intact up "
        "to the failure?",
        metrics="curl -s GATEWAY_URL/metrics | grep '^llmctl_gateway_requests_total'",
        up=_llmctl("up", target),
        ingest=_llmctl("ingest", target),
        restart_gateway=restart,
        restart_triton=restart,
        scale="a local stack cannot: serve from a kubernetes target to scale out",
        prose=frozenset({"scale", "audit_verify"}),
    )


def _kubernetes_commands(bp: Blueprint, target: str, spec: Any) -> Commands:
    kubectl = f"kubectl -n {spec.namespace}" + (
        f" --context {spec.context}" if spec.context else ""
    )
    gw, triton = f"{bp.name}-gateway", f"{bp.name}-triton"
    # the autoscaler owns Triton's replicas: raise its floor to the plan's ceiling
    floor = json.dumps({"spec": {"minReplicas": spec.replicas_max}}, separators=(",", ":"))
    return Commands(
        status=_llmctl("status", target),
        ask=_llmctl("ask", target, '"a question the documents answer"', "--url GATEWAY_URL"),
        gateway_logs=f"{kubectl} logs deploy/{gw} --all-containers --since=1h",
        triton_logs=f"{kubectl} logs deploy/{triton} --since=1h",
        audit_verify=f"`{kubectl} exec deploy/{gw} -- df -h /var/lib/llmctl`: space left on the "
        "audit volume (`llmctl audit verify` reads local targets only)",
        metrics=f"{kubectl} port-forward svc/{gw} 8080:80 & curl -s localhost:8080/metrics",
        up=_llmctl("up", target),
        ingest=_llmctl("ingest", target),
        restart_gateway=f"{kubectl} rollout restart deploy/{gw}",
        restart_triton=f"{kubectl} rollout restart deploy/{triton}",
        scale=f"{kubectl} patch hpa {triton} --type merge -p '{floor}'",
        prose=frozenset({"audit_verify"}),
    )


def _minutes(fraction: float) -> str:
    return f"{fraction * MINUTES_PER_SLO_PERIOD:,.0f} min"


def _bullets(items: list[str] | tuple[str, ...]) -> list[str]:
    return [f"- {item}" for item in items]


def _service(bp: Blueprint, target: str, kind: str) -> list[str]:
    md = bp.metadata
    lines = [
        "## Service",
        "",
        f"- **Service:** {md.name}: {md.description}"
        if md.description
        else f"- **Service:** {md.name}",
        f"- **Owner:** {md.owner or 'not set (metadata.owner)'}",
        f"- **Target:** {target} ({kind})",
        f"- **Model:** {bp.model.id}"
        + (f" at revision {bp.model.revision}" if bp.model.revision else ""),
        f"- **Compliance:** {', '.join(bp.requirements.compliance) or 'none declared'}",
        "",
        "Commands below use the blueprint's path in your checkout:",
        "",
        "```sh",
        f"BLUEPRINT=path/to/{bp.path.name}",
        "```",
    ]
    return lines


def _endpoints_local(bp: Blueprint, target: str, cmd: Commands) -> list[str]:
    state = f"$LLMCTL_HOME/{bp.name}/{target}"
    return [
        "## Endpoints",
        "",
        "The local target runs Triton, the gateway and a watchdog as processes on this machine, on "
        "ports the kernel picks at `llmctl up` (kept across restarts). Find them with:",
        "",
        f"- `{cmd.status}`: each component's address (GATEWAY_URL is the gateway's), health and "
        "restarts.",
        f"- `{state}/stack.json`: the applied plan and its endpoints; "
        f"`{state}/components/<name>.json`: each process's pid and ports.",
        f"- Logs: `{state}/logs/<component>.log` (`gateway`, `triton`, `watchdog`). "
        "`$LLMCTL_HOME` defaults to `./.llmctl` in the directory `llmctl up` ran in.",
        "- The watchdog restarts a dead or hung component on its ports by itself; an alert that "
        "outlives a restart needs a person.",
    ]


def _endpoints_kubernetes(bp: Blueprint, spec: Any) -> list[str]:
    ctx = f" (kube context `{spec.context}`)" if spec.context else ""
    ingress = (
        f"- Ingress: `https://{spec.ingress_host}` (TLS secret `{bp.name}-tls`)"
        if spec.ingress_host
        else "- Ingress: none; inside the cluster only, or `kubectl port-forward`"
    )
    return [
        "## Endpoints",
        "",
        f"- Namespace: `{spec.namespace}`{ctx}",
        f"- Gateway: Deployment and Service `{bp.name}-gateway` (port 80 to the pods' 8080), "
        f"{spec.gateway_replicas} replicas; GATEWAY_URL is the ingress or a port-forward",
        f"- Triton: Deployment and Service `{bp.name}-triton` (HTTP 8000, gRPC 8001, metrics "
        f"8002), {spec.replicas_min} to {spec.replicas_max} replicas of {spec.tp} x {spec.gpu} "
        "(the capacity plan; the HPA moves between them)",
        ingress,
        f"- Index volume: PVC `{bp.name}-index`; audit volume: PVC `{bp.name}-audit`",
    ]


def _slos(bp: Blueprint) -> list[str]:
    slos = burn_slos(bp)
    lines = [
        "## SLOs and error budgets",
        "",
        f"Budgets are over a rolling {SLO_DAYS} days, also shown as minutes of a full outage (or "
        "of every request slow) that spend them. A request counts when it is "
        f"{' or '.join(GOOD_OUTCOMES)} (good) or {', '.join(SERVER_ERRORS)} (bad); "
        f"{', '.join(CALLER_FAULTS)} are the caller's doing and count for neither.",
        "",
        "| SLO | Objective | Error budget | Per 30 days | Alerts |",
        "|---|---|---|---|---|",
    ]
    for s in slos:
        names = f"[Llmctl{s.key}FastBurn](#llmctl{s.key.lower()}fastburn), "
        names += f"[Llmctl{s.key}SlowBurn](#llmctl{s.key.lower()}slowburn)"
        lines.append(
            f"| {s.title} | {s.objective} | {s.budget * 100:.4g}% of requests | "
            f"{_minutes(s.budget)} | "
            f"{names} |"
        )
    return lines


def _dashboards(bp: Blueprint, target: str, spec: Any | None) -> list[str]:
    from llmctl.stacks.spec import dashboard_title, dashboard_uid

    lines = ["## Dashboards", ""]
    title, uid = dashboard_title(bp.name, target), dashboard_uid(bp.name)
    if spec is None:
        lines.append(
            f"No Grafana runs with the local target. A kubernetes target provisions the dashboard "
            f"*llmctl: {bp.name} (TARGET)* (uid `{uid}`); here, read the gateway's metrics: "
            "`curl -s GATEWAY_URL/metrics`."
        )
    elif spec.dashboards:
        lines.append(
            f"Grafana: *{title}* (uid `{uid}`, `/d/{uid}`), from the ConfigMap "
            f'`{bp.name}-dashboard` (label `grafana_dashboard: "1"`): SLO panels first '
            "(requests by outcome, p95 latency and TTFT, error ratio), then Triton and the GPUs."
        )
    else:
        lines.append("observability.dashboards is off: no Grafana dashboard is provisioned.")
    lines.append("")
    if spec is not None and spec.prometheus_operator and spec.metrics:
        lines.append(
            f"Alert rules: PrometheusRule `{bp.name}-alerts` in `{spec.namespace}`, next to the "
            f"ServiceMonitors `{bp.name}-gateway` and `{bp.name}-triton`."
        )
    else:
        why = "runs no Prometheus" if spec is None else "has no Prometheus operator"
        lines.append(
            f"Alert rules: none deployed (this target {why}). A Prometheus that scrapes the "
            "gateway and Triton and loads the rules below alerts as described."
        )
    return lines


def _untemplated(text: str) -> str:
    """An annotation as on-call reads it here: ``{{ $labels.pod }}`` becomes ``<pod>``."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"<\1>", text)


def _alert_section(alert: Alert, cmd: Commands) -> list[str]:
    return [
        f"### {alert.name}",
        "",
        f"**Severity:** {alert.severity}, after {alert.for_}. {_untemplated(alert.description)}",
        "",
        f"**What it means.** {cmd.fill(alert.meaning)}",
        "",
        "```promql",
        alert.expr,
        "```",
        "",
        "**What to check**",
        "",
        *_bullets([cmd.fill(c) for c in alert.checks]),
        "",
        "**What to do**",
        "",
        *_bullets([cmd.fill(a) for a in alert.actions]),
    ]


def _alerts(found: list[Alert], cmd: Commands) -> list[str]:
    lines = [
        "## Alerts",
        "",
        "Pages need a person now; tickets need one this week. Every rule's `runbook_url` points at "
        "its section here.",
        "",
        "| Alert | Severity | For |",
        "|---|---|---|",
        *(f"| [{a.name}](#{a.anchor}) | {a.severity} | {a.for_} |" for a in found),
    ]
    for a in found:
        lines += ["", *_alert_section(a, cmd)]
    return lines


def _rollback(target: str) -> list[str]:
    return [
        "## Roll back",
        "",
        "Re-apply the previous revision of the blueprint; `llmctl rollback` is not available yet.",
        "",
        "```sh",
        "# the last good revision (or git revert the bad change):",
        'git log --oneline -- "$BLUEPRINT"',
        'git checkout GOOD_REVISION -- "$BLUEPRINT"',
        "# what changes back (exit 2 when something does), then apply it:",
        _llmctl("plan", target),
        _llmctl("up", target),
        "```",
        "",
        "Engines and local model builds are content-addressed, so going back to a revision that "
        "served before reuses its cached build instead of rebuilding.",
    ]


def _restore(bp: Blueprint, target: str, spec: Any | None) -> list[str]:
    lines = [
        "## Back up and restore",
        "",
        "A backup holds the index, the audit trail with its sealed archive, which models served "
        "and the config, with a MANIFEST.json of hashes; secrets only with `--include-secrets`. "
        "Restore checks every hash before it touches the stack.",
        "",
        "```sh",
        _llmctl("backup", target, "--to DIR"),
        "# restore needs a stopped target without an index or audit trail:",
        _llmctl("down", target),
        _llmctl("restore", target, "--from DIR"),
        _llmctl("up", target),
        "```",
    ]
    if spec is not None:
        lines += [
            "",
            "On a kubernetes target these verbs refuse: the index and audit volumes "
            f"(`{bp.name}-index`, `{bp.name}-audit`) are snapshotted in the cluster instead "
            f"(`kubectl -n {spec.namespace} get volumesnapshots`); restore one into a new claim "
            "with the snapshot as its `dataSource`.",
        ]
    return lines


def _obligations(bp: Blueprint) -> list[str]:
    req = bp.requirements
    audit = req.audit
    residency = {
        "private": "private: data never leaves the organisation's infrastructure; egress is "
        "denied whatever network.egress says",
        "region": f"region: data stays in {req.region or 'the declared region'}",
    }.get(req.data_residency, req.data_residency)
    years = f" (about {audit.retention_days / 365:.0f} years)" if audit.retention_days else ""
    retention = (
        f"{audit.retention_days} days{years}: sealed archives are kept that long; never delete "
        "audit files by hand, and restore them from a backup if a volume is lost"
        if audit.retention_days
        else "not set: records are kept until someone deletes them"
    )
    question = (
        "question text is stored in the records: treat the trail as personal data"
        if audit.include_question_text
        else 'only a keyed HMAC of each question is stored (`llmctl audit find` answers "who '
        'asked this?" with the key ring; never copy the ring next to a backup of the trail)'
    )
    return [
        "## Data residency and retention",
        "",
        f"- **Residency (dataResidency):** {residency}.",
        f"- **Audit:** {'required: no answer leaves without a durable record' if audit.required else 'optional'}; "
        f"sink `{audit.sink or 'none'}`.",
        f"- **Retention (retentionDays):** {retention}.",
        f"- **Question text (includeQuestionText: {str(audit.include_question_text).lower()}):** "
        f"{question}.",
        f"- **Index age:** the index may be at most {DEFAULT_INDEX_MAX_AGE_S // 86400} days old "
        "before LlmctlIndexStale opens a ticket (llmctl's default; the blueprint has no field).",
        f"- **Compliance regimes:** {', '.join(req.compliance) or 'none declared'}; incidents that "
        "refused answers or lost records go to the service owner for the compliance record.",
    ]


def render_runbook(bp: Blueprint, target_name: str = "local") -> str:
    """The Markdown runbook of ``bp`` on the target ``target_name``."""
    target = bp.target(target_name)
    spec = None
    if target.is_local:
        cmd = _local_commands(bp, target_name)
        endpoints = _endpoints_local(bp, target_name, cmd)
    else:
        from llmctl.targets.kubernetes import resolve_spec

        spec = resolve_spec(bp, target_name)
        cmd = _kubernetes_commands(bp, target_name, spec)
        endpoints = _endpoints_kubernetes(bp, spec)
    found = alerts(bp, series_selector(bp, target_name))
    lines = [
        f"# On-call runbook: {bp.name} ({target_name})",
        "",
        "Generated by `llmctl runbook` from the blueprint; regenerate instead of editing:",
        f'`llmctl runbook "$BLUEPRINT" -t {target_name} --out {runbook_path(bp, target_name)}`.',
        "",
        *_service(bp, target_name, target.type),
        "",
        *endpoints,
        "",
        *_slos(bp),
        "",
        *_dashboards(bp, target_name, spec),
        "",
        *_alerts(found, cmd),
        "",
        *_rollback(target_name),
        "",
        *_restore(bp, target_name, spec),
        "",
        *_obligations(bp),
    ]
    return "\n".join(lines) + "\n"
