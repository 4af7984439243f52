"""``verify(bp, target)``: the gates CI trusts, in order, against a running stack.

1. check: the blueprint's schema and rules;
2. smoke: every component healthy, one cited answer;
3. load: the Locust profile from ``loadtests/`` with ``bp.gates_for(target).load``;
4. quality: the evaluation set through the gateway, against the stored baseline;
5. compliance: each requirement against the evidence this run recorded.

A gate that cannot run because an earlier one failed (no stack, no answer) is reported as skipped
with the reason; the run still fails because of the earlier gate. Every request this run makes
is recorded in ``<report>/evidence/responses.jsonl``, which the compliance gate reads back.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmctl.errors import LlmctlError
from llmctl.gates import compliance, load, quality
from llmctl.gates.results import ERROR, FAILED, SKIPPED, Check, GateResult, VerifyResult

#: ``on_progress(gate, message, fraction)``: fraction in 0..1 when the gate knows it, else None.
VerifyProgress = Callable[[str, str, float | None], None]

GATE_ORDER = ("check", "smoke", "load", "quality", "compliance")


def _noop(_gate: str, _message: str, _fraction: float | None) -> None:
    pass


class Stack:
    """Where the running stack of a local target answers, and how to act as one of its users."""

    def __init__(self, bp: Any, target: str) -> None:
        from llmctl.gateway.component import COMPONENT_NAME, gateway_config_path
        from llmctl.local.supervisor import Supervisor
        from llmctl.targets.local import TRITON, stacks_home

        self.state_dir = stacks_home() / bp.name / target
        self.supervisor = Supervisor(self.state_dir)
        gw = self.supervisor.record(COMPONENT_NAME)
        tr = self.supervisor.record(TRITON)
        if gw is None or not gw.ports.get("http"):
            raise LlmctlError(
                f"no gateway is running for {bp.name!r} ({self.state_dir}); start the stack with "
                f"`llmctl up {bp.path}` and `llmctl ingest {bp.path}` first"
            )
        self.gateway_url = f"http://127.0.0.1:{gw.ports['http']}"
        self.triton_url = (
            f"http://127.0.0.1:{tr.ports['http']}" if tr and tr.ports.get("http") else None
        )
        self.config: dict[str, Any] = {}
        cfg = gateway_config_path(self.state_dir)
        if cfg.is_file():
            self.config = json.loads(cfg.read_text(encoding="utf-8"))
        audit = (self.config.get("audit") or {}).get("path")
        self.audit_file = Path(audit) if audit else self.state_dir / "audit" / "audit.jsonl"

    def token_for(self, user: str, groups: list[str], ttl_s: int = 7200) -> str:
        from llmctl.gateway.auth import mint_dev_token

        return mint_dev_token(self.state_dir, user=user, groups=groups, ttl_s=ttl_s)

    def endpoints(self) -> dict[str, str]:
        """What the stack's own clients call (the gateway's upstreams and identity provider)."""
        c = self.config
        out = {
            "triton_url": c.get("triton_url", ""),
            "triton_grpc_url": c.get("triton_grpc_url", ""),
        }
        auth = c.get("auth") or {}
        if auth.get("jwks_url"):
            out["auth.jwks_url"] = auth["jwks_url"]
        return {k: v for k, v in out.items() if v}

    def listeners(self) -> dict[str, list[str]]:
        out = {}
        for rec in self.supervisor.records():
            pids = self.supervisor._group_members(rec) or [rec.pid]  # noqa: SLF001
            out[rec.name] = compliance.listening_sockets(pids)
        return out


def doc_acls(bp: Any) -> dict[str, list[str]]:
    """Each document's ACL as ingestion reads it (the ground truth for access checks)."""
    from llmctl.retrieval.documents import read_sources, sources_from_blueprint

    read = read_sources(sources_from_blueprint(bp))
    return {d.doc_id: list(d.acl) for d in read.documents}


def probe_groups(bp: Any) -> list[str]:
    """The broadest groups: the sources' default ACLs (every employee), nothing more."""
    groups = sorted({g for s in bp.retrieval.sources for g in (s.acl or ())})
    return groups or []


def identities_and_questions(
    bp: Any, target: str, users: int, token_for: Callable[[str, list[str]], str] | None = None
) -> tuple[list[load.Identity], list[dict[str, Any]]]:
    """Simulated employees (everyone has the broad groups; some also one team group from the
    corpus ACLs) and the answerable questions of the evaluation set."""
    if token_for is None:
        stack = Stack(bp, target)
        token_for = stack.token_for
    base = probe_groups(bp)
    teams = sorted({g for acl in doc_acls(bp).values() for g in acl} - set(base))
    identities = []
    for i in range(max(1, users)):
        groups = list(base) + ([teams[(i - 1) % len(teams)]] if teams and i % 2 else [])
        user = f"verify-load-{i:03d}"
        identities.append(load.Identity(user, groups, token_for(user, groups)))
    questions: list[dict[str, Any]] = []
    qg = bp.gates_for(target).quality
    if qg.eval_set:
        questions = [
            q
            for q in quality.load_eval_set(bp.resolve_path(qg.eval_set))
            if q.get("kind") != "restricted"
        ]
    return identities, questions


def _check_gate(bp_path: Path) -> tuple[GateResult, Any]:
    from llmctl.blueprint import check_file

    res = check_file(bp_path)
    checks = [Check(f"{p.rule_id}@{p.line}:{p.col}", False, p.text()) for p in res.errors]
    checks += [Check(f"warning.{p.rule_id}@{p.line}:{p.col}", None, p.text()) for p in res.warnings]
    if not checks:
        checks = [Check("blueprint", True, f"{bp_path}: schema and semantic rules pass")]
    return GateResult.from_checks("check", checks), res.blueprint


def _skip(name: str, why: str) -> GateResult:
    return GateResult(name, SKIPPED, f"not run: {why}")


def kubernetes_manifests(bp: Any) -> dict[str, list[dict[str, Any]] | str]:
    """Rendered manifests of each kubernetes target (Pulumi mocks, no cluster), or why not."""
    out: dict[str, list[dict[str, Any]] | str] = {}
    targets = [t for t in bp.targets.values() if t.type == "kubernetes"]
    if not targets:
        return out
    try:
        from llmctl.k8s.render import render
        from llmctl.targets.kubernetes import resolve_spec
    except ImportError as exc:
        why = f"cannot render kubernetes manifests here ({exc}); install llmctl[k8s]"
        return {t.name: why for t in targets}
    for t in targets:
        try:
            out[t.name] = [dict(m) for m in render(resolve_spec(bp, t.name)).manifests]
        except Exception as exc:  # another component's failure: report it, do not crash verify
            out[t.name] = f"render failed: {type(exc).__name__}: {exc}"
    return out


def verify(
    blueprint: Any,
    target: str = "local",
    *,
    report_dir: str | os.PathLike[str] | None = None,
    junit: str | os.PathLike[str] | None = None,
    update_baseline: bool = False,
    eval_limit: int | None = None,
    quality_workers: int = 2,
    on_progress: VerifyProgress | None = None,
    stack: Any = None,
) -> VerifyResult:
    """Run every gate for ``blueprint`` (a path or a loaded Blueprint) on ``target``.

    Writes ``verify.json``, ``index.html``, plots and ``evidence/`` under ``report_dir`` (a
    temporary folder when None) and JUnit XML to ``junit``; returns the result (``.ok``).
    ``stack`` replaces the target's running stack (anything with ``Stack``'s attributes), for a
    gateway served some other way.
    """
    say = on_progress or _noop
    t_start = time.monotonic()
    bp_path = Path(getattr(blueprint, "path", blueprint))
    out = Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="llmctl-verify-"))
    out.mkdir(parents=True, exist_ok=True)
    evidence_dir = out / "evidence"
    result = VerifyResult(
        blueprint=getattr(blueprint, "name", bp_path.stem),
        blueprint_path=str(bp_path),
        target=target,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        report_dir=str(out),
    )
    samples: list[dict[str, Any]] = []

    def finish() -> VerifyResult:
        result.seconds = time.monotonic() - t_start
        from llmctl.gates.junit import write_junit
        from llmctl.gates.report import write_reports

        write_reports(result, out, samples)
        write_junit(result, Path(junit) if junit else out / "junit.xml")
        return result

    def timed(gate: GateResult, since: float) -> GateResult:
        gate.seconds = time.monotonic() - since
        result.gates.append(gate)
        say(gate.name, f"{gate.status}: {gate.message}", 1.0)
        return gate

    # 1. check ---------------------------------------------------------------------------------
    t = time.monotonic()
    say("check", f"checking {bp_path}", None)
    check, bp = _check_gate(bp_path)
    timed(check, t)
    if bp is None or not check.ok:
        for name in GATE_ORDER[1:]:
            result.gates.append(_skip(name, "the blueprint does not pass `llmctl check`"))
        return finish()
    result.blueprint = bp.name
    tgt = bp.target(target)
    gates = bp.gates_for(target)
    acls = doc_acls(bp) if bp.retrieval.enabled else {}
    questions = (
        quality.load_eval_set(bp.resolve_path(gates.quality.eval_set))
        if gates.quality.eval_set
        else []
    )
    responses: list[dict[str, Any]] = []

    # 2. smoke ---------------------------------------------------------------------------------
    t = time.monotonic()
    say("smoke", "health of every component, one cited answer", None)
    given = stack
    stack = None
    if given is not None:
        stack = given
        first = next((q for q in questions if q.get("kind") != "restricted"), None)
        smoke, got = _smoke(
            stack,
            first
            or {
                "question": "What is the leave policy?",
                "asker_groups": probe_groups(bp),
                "id": "smoke",
            },
        )
        responses += got
    elif not tgt.is_local:
        smoke = GateResult(
            "smoke",
            ERROR,
            f"target {target!r} is {tgt.type}: live gates run against a local stack only (render checks still run)",
        )
    else:
        try:
            stack = Stack(bp, target)
        except LlmctlError as exc:
            smoke = GateResult("smoke", FAILED, str(exc))
        else:
            first = next(
                (q for q in questions if q.get("kind") != "restricted"),
                {
                    "question": "What is the annual leave policy?",
                    "asker_groups": probe_groups(bp),
                    "id": "smoke",
                },
            )
            smoke, got = _smoke(stack, first)
            responses += got
    timed(smoke, t)
    live = stack is not None and smoke.ok

    # 3. load ----------------------------------------------------------------------------------
    t = time.monotonic()
    load_result: dict[str, Any] | None = None
    if not live:
        timed(_skip("load", "the smoke gate failed"), t)
    else:
        assert stack is not None
        lg = gates.load
        say("load", f"{lg.users} users, spawn {lg.spawn_rate:g}/s, {lg.duration_s:g} s", 0.0)
        identities, load_questions = identities_and_questions(bp, target, lg.users, stack.token_for)
        spec = load.LoadSpec(
            host=stack.gateway_url,
            users=lg.users,
            spawn_rate=lg.spawn_rate,
            duration_s=lg.duration_s,
            identities=identities,
            questions=load_questions
            or [{"question": "What is the leave policy?", "asker_groups": []}],
        )

        def on_load(event: dict[str, Any]) -> None:
            if event.get("event") == "progress":
                p95 = event.get("p95_ms")
                say(
                    "load",
                    f"{event['users']} users · {event['requests']} requests · {event['failures']} failed"
                    + (f" · p95 {p95 / 1e3:.1f} s" if p95 else ""),
                    min(1.0, event["elapsed_s"] / max(event["duration_s"], 1e-9)),
                )

        try:
            load_result = load.run_profile(spec, on_progress=on_load, workdir=evidence_dir)
            gate = load.load_gate(load_result, lg)
        except Exception as exc:
            gate = load.load_gate(None, lg, f"the load profile failed: {exc}")
        if load_result is not None:
            samples = load_result.get("samples", [])
            responses += load_result.get("responses", [])
        timed(gate, t)

    # 4. quality -------------------------------------------------------------------------------
    t = time.monotonic()
    if not live:
        timed(_skip("quality", "the smoke gate failed"), t)
    elif not questions:
        timed(GateResult("quality", SKIPPED, "no evaluation set (gates.quality.evalSet)"), t)
    else:
        assert stack is not None
        picked = quality.select(questions, eval_limit)
        say("quality", f"asking {len(picked)} evaluation questions", 0.0)
        got = quality.ask_all(
            stack.gateway_url,
            picked,
            stack.token_for,
            workers=quality_workers,
            on_progress=lambda d, n: say("quality", f"{d}/{n} questions", d / n),
        )
        responses += got
        figures = quality.score(picked, got, acls)
        baseline_path = bp.resolve_path(gates.quality.baseline) if gates.quality.baseline else None
        baseline = quality.read_baseline(baseline_path) if baseline_path else None
        gate = quality.quality_gate(figures, gates.quality, baseline)
        gate.figures["baseline_file"] = str(baseline_path) if baseline_path else None
        if update_baseline and baseline_path:
            quality.write_baseline(
                baseline_path,
                figures,
                eval_hash=quality.eval_set_hash(questions),
                blueprint_hash=bp.hash,
            )
            gate.figures["baseline_updated"] = True
            say("quality", f"baseline written to {baseline_path}", None)
        timed(gate, t)

    # 5. compliance ----------------------------------------------------------------------------
    t = time.monotonic()
    if live and stack is not None:
        restricted = [
            dict(q, asker_groups=probe_groups(bp))
            for q in questions
            if q.get("kind") == "restricted"
        ]
        if restricted:
            say("compliance", f"probe user asks {len(restricted)} restricted questions", None)
            responses += quality.ask_all(
                stack.gateway_url,
                restricted,
                stack.token_for,
                workers=quality_workers,
                source="probe",
            )
    responses_file = evidence_dir / "responses.jsonl"
    compliance.write_responses(responses_file, responses)
    if not live:
        timed(_skip("compliance", "no live evidence (the smoke gate failed)"), t)
        return finish()
    assert stack is not None
    load_gate_result = result.gate("load")
    ev = compliance.Evidence(
        responses_file=responses_file,
        audit_file=stack.audit_file,
        listeners=stack.listeners(),
        endpoints=stack.endpoints(),
        load_figures=load_result["figures"] if load_result else None,
        load_thresholds=gates.load if load_gate_result is not None else None,
        doc_acls=acls,
        manifests=kubernetes_manifests(bp),
    )
    _save_evidence(evidence_dir, ev)
    timed(compliance.check_compliance(bp, tgt, ev), t)
    return finish()


def _smoke(stack: Stack, question: dict[str, Any]) -> tuple[GateResult, list[dict[str, Any]]]:
    from llmctl.gates.smoke import run_smoke

    return run_smoke(stack.gateway_url, stack.triton_url, question, stack.token_for)


def _save_evidence(evidence_dir: Path, ev: compliance.Evidence) -> None:
    """What the compliance gate is about to read (except the big files it points at)."""
    doc = {
        "responses_file": str(ev.responses_file),
        "audit_file": str(ev.audit_file),
        "listeners": ev.listeners,
        "endpoints": ev.endpoints,
        "load_figures": ev.load_figures,
        "doc_acls": ev.doc_acls,
        "manifests": {
            k: (v if isinstance(v, str) else f"{len(v)} manifests") for k, v in ev.manifests.items()
        },
    }
    (evidence_dir / "evidence.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


def load_evidence(evidence_dir: Path, load_thresholds: Any = None) -> compliance.Evidence:
    """The Evidence a previous run saved (to re-judge it, e.g. after planting a violation)."""
    doc = json.loads((evidence_dir / "evidence.json").read_text())
    return compliance.Evidence(
        responses_file=Path(doc["responses_file"]),
        audit_file=Path(doc["audit_file"]) if doc.get("audit_file") else None,
        listeners=doc.get("listeners"),
        endpoints=doc.get("endpoints") or {},
        load_figures=doc.get("load_figures"),
        load_thresholds=load_thresholds,
        doc_acls=doc.get("doc_acls") or {},
    )
