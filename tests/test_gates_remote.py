"""``llmctl verify`` against a gateway reached by URL, as CI verifies a deployed target.

Without a stack: the audit read endpoint (auditor group only, itself audited, rate-limited, JSON
errors), the token command (substitution per argument, no shell, one-line errors) and the client
credentials source (secrets from the environment only).

With the real local stack (``@pytest.mark.stack``; one Triton and index, shared):

- production-like: the gateway runs as its own process and validates tokens against a JWKS it
  fetches over HTTP from an OIDC-style token service the test starts (``tests/oidc_service.py``:
  RS256, client credentials); verify runs with ``--target prod --url`` and tokens from that
  service, every gate passes, and no report file holds a bearer token (``eyJ``);
- planted violations: a gateway whose audit sink drops one record and which strips the citations
  of one answer fails ``audit.one-record-per-request`` and ``citations.every-answer-cited``,
  judged from records read over ``GET /v1/audit/records``;
- the token command: ``llmctl verify ... --target prod --url URL --token-command "llmctl token
  --user {user} --groups {groups} -b BP"`` against the running local stack exits 0.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_gates_stack
import yaml
from blueprint_paths import absolute_paths
from oidc_service import TokenService
from test_gateway_support import ServerThread, make_config, token

from llmctl.errors import LlmctlError
from llmctl.gates.identity import ClientCredentialsTokenSource, CommandTokenSource
from llmctl.gateway.app import create_app
from llmctl.gateway.audit import AuditLog, read_records
from llmctl.gateway.config import AuthConfig, GatewayConfig, RateLimitConfig, load_config

SHORT, short_blueprint = test_gates_stack.SHORT, test_gates_stack.short_blueprint
verify_stack = test_gates_stack.verify_stack  # the stack fixture (Triton, gateway, index)

CLIENT_ID_ENV, CLIENT_SECRET_ENV = "LLMCTL_TEST_CLIENT_ID", "LLMCTL_TEST_CLIENT_SECRET"
AUDITORS = "audit-readers"  # requirements.audit.auditorGroup of the example blueprint


# --- without a stack ----------------------------------------------------------------------------


class NoHits:
    """A retriever with nothing to find: every ask is a no-source answer (and one record)."""

    index_hash = ""

    def search(self, question: str, groups: Any, top_k: int) -> list[Any]:
        return []

    def ready(self) -> tuple[bool, str]:
        return True, ""


def test_audit_read_endpoint_is_for_auditors_only_and_itself_audited(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, rate=RateLimitConfig(requests_per_minute=1, burst=3))
    cfg = cfg.with_changes(audit=replace(cfg.audit, auditor_group=AUDITORS))
    auditor = {"Authorization": f"Bearer {token(tmp_path, 'ann', [AUDITORS])}"}
    staff = {"Authorization": f"Bearer {token(tmp_path, 'bob', ['staff'])}"}
    with (
        ServerThread(create_app(cfg, retriever=NoHits())) as srv,
        httpx.Client(base_url=srv.url) as http,
    ):
        asked = [http.post("/v1/ask", json={"question": f"q{i}"}, headers=staff) for i in (1, 2)]
        ids = [r.headers["x-request-id"] for r in asked]
        assert [r.status_code for r in asked] == [200, 200]
        none = http.get("/v1/audit/records", params={"request_id": ids[0]})
        assert none.status_code == 401 and none.json()["outcome"] == "unauthorized"
        denied = http.get("/v1/audit/records", params={"request_id": ids[0]}, headers=staff)
        assert denied.status_code == 403 and AUDITORS in denied.json()["error"]
        bad = http.get("/v1/audit/records", headers=auditor)
        assert bad.status_code == 400 and "request_id" in bad.json()["error"]
        got = http.get(
            "/v1/audit/records", params=[("request_id", i) for i in ids], headers=auditor
        )
        assert got.status_code == 200, got.text
        body = got.json()
        assert sorted(r["request_id"] for r in body["records"]) == sorted(ids)
        assert body["count"] == 2 and body["truncated"] is False
        window = http.get(
            "/v1/audit/records", params={"since": "2000-01-01T00:00:00Z"}, headers=auditor
        )
        assert {r["request_id"] for r in window.json()["records"]} >= set(ids)
        limited = http.get("/v1/audit/records", params={"request_id": ids[0]}, headers=auditor)
        assert limited.status_code == 429 and limited.headers["retry-after"]
    trail = read_records(tmp_path / "audit" / "audit.jsonl")
    reads = [r for r in trail if r["endpoint"] == "/v1/audit/records"]
    # every read, allowed or not, left exactly one record of its own
    assert [(r["status"], r["outcome"]) for r in reads] == [
        (401, "unauthorized"),
        (403, "forbidden"),
        (400, "bad_request"),
        (200, "audit_read"),
        (200, "audit_read"),
        (429, "rate_limited"),
    ]
    assert all("eyJ" not in json.dumps(r) for r in trail)


def test_audit_read_refused_without_an_auditor_group(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    bearer = {"Authorization": f"Bearer {token(tmp_path, 'ann', [AUDITORS])}"}
    with ServerThread(create_app(cfg, retriever=NoHits())) as srv:
        r = httpx.get(f"{srv.url}/v1/audit/records", params={"request_id": "x"}, headers=bearer)
    assert r.status_code == 403 and "auditorGroup" in r.json()["error"]


def test_token_command_substitutes_per_argument_without_a_shell(tmp_path: Path) -> None:
    script = "import sys; print('noise'); print('tok:' + '|'.join(sys.argv[1:]))"
    cmd = f"{sys.executable} -c {json.dumps(script)} --user {{user}} --groups {{groups}}"
    src = CommandTokenSource(cmd)
    assert src.token_for("ann;$(id)", ["a", "b"]) == "tok:--user|ann;$(id)|--groups|a,b"
    with pytest.raises(LlmctlError, match=r"exited 3 for user 'ann'.*: boom$"):
        CommandTokenSource(
            f"{sys.executable} -c \"import sys; print('boom', file=sys.stderr); sys.exit(3)\""
        ).token_for("ann", [])
    with pytest.raises(LlmctlError, match="not found"):
        CommandTokenSource("no-such-token-program-xyz {user}").token_for("ann", [])
    with pytest.raises(LlmctlError, match="printed no token"):
        CommandTokenSource(f"{sys.executable} -c pass").token_for("ann", [])
    with pytest.raises(LlmctlError, match="within 0.5 s"):
        CommandTokenSource(
            f"{sys.executable} -c 'import time; time.sleep(5)'", timeout_s=0.5
        ).token_for("ann", [])


def test_client_credentials_need_the_named_environment_variables(tmp_path: Path) -> None:
    bp = _blueprint(tmp_path, token_url="http://127.0.0.1:1/token")
    with pytest.raises(LlmctlError, match=f"environment variable {CLIENT_ID_ENV} "):
        ClientCredentialsTokenSource.from_blueprint(bp, environ={})
    src = ClientCredentialsTokenSource.from_blueprint(
        bp, environ={CLIENT_ID_ENV: "ci", CLIENT_SECRET_ENV: "s3cret"}
    )
    with pytest.raises(LlmctlError, match="unreachable") as exc:
        src.token_for("ann", [])
    assert "s3cret" not in str(exc.value)


def _blueprint(tmp: Path, **auth: str) -> Any:
    from llmctl.blueprint import load_blueprint

    doc = yaml.safe_load(
        (Path(__file__).parent.parent / "blueprints" / "hr-policy-assistant.yaml").read_text()
    )
    doc["network"]["auth"].update(
        {
            "tokenUrl": auth["token_url"],
            "clientIdEnv": CLIENT_ID_ENV,
            "clientSecretEnv": CLIENT_SECRET_ENV,
        }
    )
    absolute_paths(doc, Path(__file__).parent.parent / "blueprints")
    path = tmp / "bp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_blueprint(path)


# --- against the real local stack ---------------------------------------------------------------


def remote_blueprint(tmp: Path, name: str, service: TokenService | None = None) -> Path:
    """The short test blueprint with the prod target's gates as short as the local ones and, with
    ``service``, its identity provider: issuer, JWKS URL, token endpoint and credential vars."""
    path = short_blueprint(tmp, name)
    doc = yaml.safe_load(path.read_text())
    # one load user: on two shared cores a second one only adds first-token timeouts
    doc["targets"]["prod"]["gates"] = {"load": {**SHORT, "users": 1, "spawnRate": 1}}
    if service is not None:
        doc["network"]["auth"].update(
            {
                "issuer": service.issuer,
                "audience": service.audience,
                "jwksUrl": f"{service.url}/jwks",
                "tokenUrl": f"{service.url}/token",
                "clientIdEnv": CLIENT_ID_ENV,
                "clientSecretEnv": CLIENT_SECRET_ENV,
            }
        )
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def token_service() -> Iterator[TokenService]:
    """The identity provider, on its own uvicorn server, with the CI client's credentials in
    the environment variables the blueprint names."""
    service = TokenService("hr-policy-assistant")
    with ServerThread(service.app, GatewayConfig()) as srv:
        service.bind(srv.url)
        secret = service.add_client("llmctl-ci")
        saved = {k: os.environ.get(k) for k in (CLIENT_ID_ENV, CLIENT_SECRET_ENV)}
        os.environ.update({CLIENT_ID_ENV: "llmctl-ci", CLIENT_SECRET_ENV: secret})
        try:
            yield service
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def prod_config(target: Any, service: TokenService, audit_dir: Path) -> GatewayConfig:
    """The local stack's gateway config as production has it: OIDC against the token service's
    JWKS URL (no dev key), its own audit sink, the blueprint's auditor group."""
    cfg = load_config(target.state_dir / "gateway" / "config.json")
    return cfg.with_changes(
        target="prod",
        auth=AuthConfig(
            mode="oidc",
            issuer=service.issuer,
            audience=service.audience,
            jwks_url=f"{service.url}/jwks",
            groups_claim="groups",
        ),
        audit=replace(cfg.audit, path=str(audit_dir / "audit.jsonl"), auditor_group=AUDITORS),
    )


@pytest.fixture(scope="module")
def prod_gateway(verify_stack, token_service) -> Iterator[str]:
    """The gateway as its own process (``python -m llmctl.gateway``), as a Deployment runs it."""
    from llmctl.gateway.config import write_config

    tmp, target = verify_stack
    work = tmp / "prod-gateway"
    cfg_path = write_config(
        prod_config(target, token_service, work / "audit"), work / "config.json"
    )
    ready = work / "ready.json"
    log = open(work / "gateway.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmctl.gateway",
            "--config",
            str(cfg_path),
            "--port",
            "0",
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, (work / "gateway.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        yield wait_ready(f"http://127.0.0.1:{json.loads(ready.read_text())['port']}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wait_ready(url: str, timeout_s: float = 120.0) -> str:
    """Block until ``/readyz`` answers 200, as a Deployment's readiness probe gates traffic (the
    first probe of a cold gateway opens the index and warms the embedder)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never became ready"
        time.sleep(0.5)


def _no_bearer_token_in(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and b"eyJ" in p.read_bytes()]


def _failed(result: Any) -> dict[str, list[str]]:
    """Failed checks per gate (the gate's message when it has no failed check), from a
    VerifyResult or its JSON document."""
    doc = result if isinstance(result, dict) else result.to_dict()
    out = {}
    for g in doc["gates"]:
        if g["status"] in ("passed", "skipped"):
            continue
        bad = [c for c in g.get("checks") or [] if c["status"] in ("failed", "error")]
        names = [c["name"] for c in bad]
        if names or not bad:
            out[g["name"]] = names or [g["message"]]
    return out


@pytest.mark.stack
def test_verify_a_production_like_remote_target(verify_stack, token_service, prod_gateway) -> None:
    from llmctl.gates.verify import verify

    tmp, _ = verify_stack
    bp_path = remote_blueprint(tmp, "prodlike", token_service)
    report = tmp / "prodlike-report"
    result = verify(
        bp_path, "prod", report_dir=report, eval_limit=2, quality_workers=1, url=prod_gateway
    )
    assert _failed(result) == {}, json.dumps(_failed(result), indent=1)
    assert [g.name for g in result.gates] == ["check", "smoke", "load", "quality", "compliance"]
    checks = {c.name: c for c in result.gate("compliance").checks}
    assert checks["audit.one-record-per-request"].passed
    assert checks["audit.citations-within-groups"].passed
    assert checks["audit.chain-intact"].passed is None  # checked where the sink is
    ev = json.loads((report / "evidence" / "evidence.json").read_text())
    assert ev["audit_origin"] == prod_gateway and ev["audit_error"] is None
    # the tokens came from the service, for the identities verify acts as, never from a dev key
    subjects = {c["sub"] for c in token_service.issued}
    assert "verify-auditor" in subjects and any(s.startswith("verify-load-") for s in subjects)
    assert token_service.jwks_fetches >= 1
    assert _no_bearer_token_in(report) == []


class DroppingAudit(AuditLog):
    """An audit sink that loses the record of the first answered quality question."""

    dropped: str | None = None

    def write(self, record: Any) -> None:
        if (
            self.dropped is None
            and record.stage != "intent"
            and record.outcome == "answered"
            and str(record.subject).startswith("verify-quality-")
        ):
            self.dropped = record.request_id
            return
        super().write(record)


class StripCitations:
    """ASGI middleware: the first answered JSON /v1/ask of a quality asker loses its citations."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stripped: str | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/ask" or self.stripped:
            await self.app(scope, receive, send)
            return
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        payload = auth.partition(" ")[2].split(".")[1] if auth.count(".") == 2 else ""
        sub = json.loads(base64.urlsafe_b64decode(payload + "==")).get("sub", "") if payload else ""
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                ctype = dict(message["headers"]).get(b"content-type", b"")
                if b"application/json" not in ctype or not sub.startswith("verify-quality-"):
                    held["pass"] = True
                    await send(message)
                else:
                    held["start"] = message
                return
            if held.get("pass"):
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = json.loads(b"".join(chunks))
            if body.get("outcome") == "answered" and self.stripped is None:
                body["citations"] = []
                self.stripped = body["request_id"]
            raw = json.dumps(body).encode()
            start = held["start"]
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            await send(
                {**start, "headers": [*headers, (b"content-length", str(len(raw)).encode())]}
            )
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, capture)


@pytest.mark.stack
def test_planted_violations_fail_the_matching_check_remotely(verify_stack, token_service) -> None:
    from llmctl.gates.verify import verify

    tmp, target = verify_stack
    cfg = prod_config(target, token_service, tmp / "faulty-gateway")
    audit = DroppingAudit(cfg.audit.path, max_bytes=cfg.audit.max_bytes, backups=1, fsync=False)
    app = StripCitations(create_app(cfg, audit=audit))
    bp_path = remote_blueprint(tmp, "faulty", token_service)
    with ServerThread(app, cfg) as srv:
        wait_ready(srv.url)
        result = verify(
            bp_path,
            "prod",
            report_dir=tmp / "faulty-report",
            eval_limit=2,
            quality_workers=1,
            url=srv.url,
        )
    assert audit.dropped and app.stripped, "the faults were not planted"
    failed = _failed(result)
    assert set(failed) == {"compliance"}, failed
    planted = {"audit.one-record-per-request", "citations.every-answer-cited"}
    # the stripped answer also disagrees with its record when the two faults hit two requests
    assert planted <= set(failed["compliance"]) <= planted | {"audit.fields-complete"}
    checks = {c.name: c for c in result.gate("compliance").checks}
    assert (
        audit.dropped in checks["audit.one-record-per-request"].message
        or "1 without" in checks["audit.one-record-per-request"].message
    )
    assert _no_bearer_token_in(tmp / "faulty-report") == []


@pytest.mark.stack
def test_token_command_verifies_the_running_local_stack_as_prod(verify_stack) -> None:
    from typer.testing import CliRunner

    from llmctl.cli import app
    from llmctl.gates.stack import Stack

    tmp, _ = verify_stack
    bp_path = remote_blueprint(tmp, "tokencmd")
    from llmctl.blueprint import load_blueprint

    url = wait_ready(Stack(load_blueprint(bp_path), "local").gateway_url)
    report = tmp / "tokencmd-report"
    # the repository's blueprint: `llmctl token` needs only its name to find the stack's issuer
    example = Path(__file__).parent.parent / "blueprints" / "hr-policy-assistant.yaml"
    command = f"llmctl token --user {{user}} --groups {{groups}} -b {example}"
    res = CliRunner().invoke(
        app,
        [
            "verify",
            str(bp_path),
            "--target",
            "prod",
            "--url",
            url,
            "--token-command",
            command,
            "--eval-limit",
            "2",
            "--report",
            str(report),
            "--output",
            "json",
        ],
    )
    doc = json.loads(res.stdout)
    assert doc["target"] == "prod" and _failed(doc) == {}, res.output[-4000:]
    assert res.exit_code == (1 if doc["failed"] else 0), res.output[-4000:]
    assert set(doc["failed"]) <= {"compliance"}
    assert _no_bearer_token_in(report) == []
