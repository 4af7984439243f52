"""The compliance gate: every requirement of the blueprint mapped to the evidence that checks it.

Evidence is what the verify run observed, never what the configuration claims:

- the responses the gateway actually sent (``responses.jsonl`` in the evidence folder, one line
  per request this run made: request id, asker, groups, outcome, cited document ids);
- the gateway's own audit JSONL (and its rotated files);
- the sockets each local component is listening on (``/proc``), and the rendered Kubernetes
  NetworkPolicies where the blueprint has a kubernetes target;
- the load gate's figures.

Checks read files, so a test (or an auditor) can tamper with the recorded evidence between the
run and the check and see the matching requirement fail.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llmctl.gates.results import Check, GateResult

#: Audit fields that must be present (and non-empty where it matters) for every request.
AUDIT_FIELDS = (
    "request_id",
    "time",
    "endpoint",
    "outcome",
    "status",
    "subject",
    "groups",
    "question_sha256",
    "cited_doc_ids",
    "cited_chunks",
    "blueprint_hash",
    "engine_hash",
    "index_hash",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
)
AUDIT_NON_EMPTY = ("request_id", "time", "outcome", "subject", "question_sha256", "blueprint_hash")


@dataclass
class Evidence:
    """Paths and figures the compliance checks read."""

    responses_file: Path
    audit_file: Path | None = None
    listeners: dict[str, list[str]] | None = None  # component -> ["127.0.0.1:8000", ...]
    endpoints: dict[str, str] = field(default_factory=dict)  # what the stack's clients call
    load_figures: dict[str, Any] | None = None
    load_thresholds: Any = None  # LoadGate
    doc_acls: dict[str, Sequence[str]] = field(default_factory=dict)
    manifests: dict[str, list[dict[str, Any]] | str] = field(
        default_factory=dict
    )  # target -> docs or why not


def write_responses(path: Path, responses: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in responses:
            fh.write(json.dumps(r, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


def read_audit(path: Path) -> list[dict[str, Any]]:
    """The audit file and its rotated predecessors (``audit.jsonl.1`` …), oldest first."""
    files = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -_suffix(p)) + [path]
    records: list[dict[str, Any]] = []
    for f in files:
        if f.is_file() and _suffix(f) >= 0:
            records += read_jsonl(f)
    return records


def _suffix(p: Path) -> int:
    tail = p.name.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else (0 if p.suffix == ".jsonl" else -1)


# -- sockets ------------------------------------------------------------------------------------
def _hex_addr(hexaddr: str) -> str:
    ip_hex, port_hex = hexaddr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:  # /proc/net/tcp6: four little-endian 32-bit words
        ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    host = str(ip) if ip.version == 4 else f"[{ip}]"
    return f"{host}:{int(port_hex, 16)}"


def listening_sockets(pids: Iterable[int]) -> list[str]:
    """``host:port`` of every TCP socket in LISTEN state owned by ``pids`` (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                found.append(_hex_addr(cols[1]))
    return sorted(set(found))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _host_of(addr: str) -> str:
    if "://" in addr:
        return urlparse(addr).hostname or ""
    return addr.rsplit(":", 1)[0].strip("[]")


# -- checks -------------------------------------------------------------------------------------
def check_residency(bp: Any, target: Any, ev: Evidence) -> list[Check]:
    req = "data residency: private"
    checks: list[Check] = []
    external = (
        [("model.endpoint", bp.model.endpoint)] if getattr(bp.model, "endpoint", None) else []
    )
    external += [(k, v) for k, v in ev.endpoints.items() if v and not is_loopback(_host_of(v))]
    checks.append(
        Check(
            "residency.no-external-endpoint",
            not external,
            "no external endpoint in the plan"
            if not external
            else "external endpoints: " + ", ".join(f"{k}={v}" for k, v in external),
            value=[v for _, v in external],
            evidence=f"{req}: model.endpoint and the endpoints the stack's clients call "
            + (", ".join(sorted(ev.endpoints)) or "(none)"),
        )
    )
    if target.is_local:
        if ev.listeners is None:
            checks.append(Check("residency.loopback-binds", None, "no listener evidence collected"))
        else:
            bad = {
                c: [a for a in addrs if not is_loopback(_host_of(a))]
                for c, addrs in ev.listeners.items()
            }
            bad = {c: a for c, a in bad.items() if a}
            silent = [c for c, addrs in ev.listeners.items() if not addrs]
            ok = not bad and not silent and bool(ev.listeners)
            detail = "; ".join(f"{c}: {', '.join(a)}" for c, a in ev.listeners.items())
            if bad:
                msg = "non-loopback listeners: " + "; ".join(
                    f"{c} {', '.join(a)}" for c, a in bad.items()
                )
            elif silent:
                msg = f"no listening socket found for {', '.join(silent)}"
            else:
                msg = f"every component listens on loopback only ({detail})"
            checks.append(
                Check(
                    "residency.loopback-binds",
                    ok,
                    msg,
                    value=ev.listeners,
                    evidence=f"{req}: /proc/net/tcp{{,6}} sockets of each component's processes",
                )
            )
    if bp.network.egress != "deny":
        checks.append(
            Check(
                "residency.egress-deny",
                False,
                f"network.egress is {bp.network.egress!r}, private residency needs 'deny'",
            )
        )
    for name, manifests in ev.manifests.items():
        if isinstance(manifests, str):
            checks.append(
                Check(f"residency.egress-denied[{name}]", None, f"target {name}: {manifests}")
            )
            continue
        ok, msg = egress_denied(manifests)
        checks.append(
            Check(
                f"residency.egress-denied[{name}]",
                ok,
                f"target {name}: {msg}",
                evidence=f"{req}: NetworkPolicies rendered for target {name}",
            )
        )
    return checks


def egress_denied(manifests: Sequence[dict[str, Any]]) -> tuple[bool, str]:
    """A default-deny egress policy exists and no policy allows egress outside the namespace.

    Allowed: rules whose peers are pods/namespaces selectors (in-cluster) or DNS to kube-system;
    an ``ipBlock`` peer or an empty ``to`` (anywhere) counts as external egress.
    """
    policies = [m for m in manifests if m.get("kind") == "NetworkPolicy"]
    if not policies:
        return False, "no NetworkPolicy in the rendered manifests"
    default_deny = [
        p
        for p in policies
        if "Egress" in (p.get("spec", {}).get("policyTypes") or [])
        and not p.get("spec", {}).get("egress")
        and not (p.get("spec", {}).get("podSelector") or {}).get("matchLabels")
    ]
    if not default_deny:
        return False, "no default-deny egress NetworkPolicy"
    open_rules = []
    for p in policies:
        for rule in p.get("spec", {}).get("egress") or []:
            peers = rule.get("to")
            if not peers or any("ipBlock" in peer for peer in peers):
                open_rules.append(p.get("metadata", {}).get("name", "?"))
    if open_rules:
        return False, "egress to outside the cluster allowed by " + ", ".join(
            sorted(set(open_rules))
        )
    return (
        True,
        f"default-deny egress ({default_deny[0].get('metadata', {}).get('name', '?')}), no external egress rule",
    )


def check_citations(bp: Any, responses: Sequence[dict[str, Any]]) -> list[Check]:
    answered = [r for r in responses if r.get("outcome") == "answered"]
    bare = [r.get("request_id") or "?" for r in answered if not r.get("citations")]
    ok = bool(answered) and not bare
    if not answered:
        msg = "no answered request in this run to inspect"
    elif bare:
        msg = f"{len(bare)} of {len(answered)} answers carried no citation (request ids {', '.join(bare[:5])})"
    else:
        msg = f"all {len(answered)} answers carried citations"
    return [
        Check(
            "citations.every-answer-cited",
            ok,
            msg,
            value=len(bare),
            threshold=0,
            evidence="citations required: responses of this run (outcome answered)",
        )
    ]


def check_audit(
    bp: Any, responses: Sequence[dict[str, Any]], audit: Sequence[dict[str, Any]]
) -> list[Check]:
    req = "audit required"
    made = [r for r in responses if r.get("request_id")]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in audit:
        by_id.setdefault(str(rec.get("request_id")), []).append(rec)
    missing = [r["request_id"] for r in made if r["request_id"] not in by_id]
    dupes = [r["request_id"] for r in made if len(by_id.get(r["request_id"], [])) > 1]
    ok = bool(made) and not missing and not dupes
    msg = (
        f"{len(made)} requests, {len(made) - len(missing)} with exactly one audit record"
        if ok
        else f"{len(made)} requests: {len(missing)} without an audit record"
        + (f" (e.g. {', '.join(missing[:3])})" if missing else "")
        + (f", {len(dupes)} with several" if dupes else "")
    )
    checks = [
        Check(
            "audit.one-record-per-request",
            ok,
            msg,
            value=len(missing) + len(dupes),
            threshold=0,
            evidence=f"{req}: audit JSONL matched to this run's request ids",
        )
    ]
    incomplete, mismatched = [], []
    for r in made:
        for rec in by_id.get(r["request_id"], [])[:1]:
            lacking = [f for f in AUDIT_FIELDS if f not in rec] + [
                f for f in AUDIT_NON_EMPTY if f in rec and not rec[f]
            ]
            if lacking:
                incomplete.append(f"{r['request_id']} lacks {', '.join(lacking)}")
            if r.get("user") and rec.get("subject") != r["user"]:
                mismatched.append(f"{r['request_id']}: subject {rec.get('subject')} != {r['user']}")
            if r.get("outcome") == "answered" and sorted(set(r.get("citations") or [])) != sorted(
                rec.get("cited_doc_ids") or []
            ):
                mismatched.append(
                    f"{r['request_id']}: cited {sorted(set(r.get('citations') or []))} but audited {rec.get('cited_doc_ids')}"
                )
    checks.append(
        Check(
            "audit.fields-complete",
            bool(made) and not incomplete and not mismatched,
            "every record complete and consistent with the response"
            if not incomplete and not mismatched
            else "; ".join((incomplete + mismatched)[:4]),
            value=len(incomplete) + len(mismatched),
            threshold=0,
            evidence=f"{req}: fields {', '.join(AUDIT_FIELDS)}; subject and cited documents against the response",
        )
    )
    return checks


def check_access(
    responses: Sequence[dict[str, Any]], doc_acls: dict[str, Sequence[str]]
) -> list[Check]:
    """Nothing cited to anyone outside the document's ACL; the probe user got zero restricted chunks."""
    leaks = []
    for r in responses:
        groups = set(r.get("groups") or [])
        for d in r.get("citations") or []:
            if d not in doc_acls:
                leaks.append(f"{r.get('request_id')}: {d} (unknown document)")
            elif not groups & set(doc_acls[d]):
                leaks.append(
                    f"{r.get('request_id')} ({r.get('user')}, groups {sorted(groups)}): {d}"
                )
    probe = [r for r in responses if r.get("source") == "probe"]
    probe_leaks = [x for x in leaks if any(str(p.get("request_id")) in x for p in probe)]
    probe_bad = [p for p in probe if p.get("status") != 200]
    checks = [
        Check(
            "access-control.probe-user",
            bool(probe) and not probe_leaks and not probe_bad,
            (
                f"probe user asked {len(probe)} restricted questions: 0 restricted chunks returned"
                if probe and not probe_leaks and not probe_bad
                else "no probe request was made"
                if not probe
                else f"{len(probe_bad)} probe requests failed"
                if probe_bad and not probe_leaks
                else f"{len(probe_leaks)} restricted citations returned to the probe user: "
                + "; ".join(probe_leaks[:3])
            ),
            value=len(probe_leaks),
            threshold=0,
            evidence="access control: a user with only the broadest group asks every restricted question",
        ),
        Check(
            "access-control.every-response",
            not leaks,
            f"no citation outside the caller's groups in {len(responses)} responses"
            if not leaks
            else f"{len(leaks)} citations outside the caller's groups: " + "; ".join(leaks[:3]),
            value=len(leaks),
            threshold=0,
            evidence="access control: each response's cited documents against their ACLs in the corpus",
        ),
    ]
    return checks


def check_slos(bp: Any, figures: dict[str, Any] | None, gate: Any) -> list[Check]:
    from llmctl.gates.results import ge, le

    if figures is None or gate is None:
        return [
            Check(
                "slo.load-figures",
                False,
                "the load gate produced no figures",
                evidence="SLOs: load gate",
            )
        ]
    checks = [
        le("slo.latency_p95_ms", figures.get("p95_latency_ms"), gate.p95_latency_ms, " ms"),
        le("slo.ttft_p95_ms", figures.get("p95_ttft_ms"), gate.p95_ttft_ms, " ms"),
        le("slo.error_rate", figures.get("error_rate"), gate.max_error_rate),
    ]
    if gate.min_throughput_rps:
        checks.append(
            ge(
                "slo.throughput_rps",
                figures.get("throughput_rps"),
                gate.min_throughput_rps,
                " req/s",
            )
        )
    for c in checks:
        c.evidence = "SLOs (with this target's gate overrides): the load gate's figures"
    return checks


def check_compliance(bp: Any, target: Any, ev: Evidence) -> GateResult:
    """Every requirement of the blueprint, each with its checks; see the module docstring."""
    responses = read_jsonl(ev.responses_file) if ev.responses_file.is_file() else []
    req = bp.requirements
    checks: list[Check] = []
    if req.data_residency == "private":
        checks += check_residency(bp, target, ev)
    if req.citations == "required":
        checks += check_citations(bp, responses)
    if req.audit.required:
        if ev.audit_file is None or not ev.audit_file.exists():
            checks.append(
                Check("audit.one-record-per-request", False, f"no audit file at {ev.audit_file}")
            )
        else:
            checks += check_audit(bp, responses, read_audit(ev.audit_file))
    if bp.retrieval.enabled and ev.doc_acls:
        checks += check_access(responses, ev.doc_acls)
    checks += check_slos(bp, ev.load_figures, ev.load_thresholds)
    figures = {
        "responses": len(responses),
        "requirements": [
            {
                "requirement": c.name.split(".")[0],
                "check": c.name,
                "status": c.status,
                "evidence": c.evidence,
                "message": c.message,
            }
            for c in checks
        ],
    }
    return GateResult.from_checks("compliance", checks, figures)
