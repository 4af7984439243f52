"""Unit tests of the gateway parts that need no server: auth, audit, rate limit, prompt, config."""

from __future__ import annotations

import gzip
import json
import os
import stat
import threading
from pathlib import Path

import jwt
import pytest

from llmctl.gateway.audit import AuditLog, AuditRecord, read_records, trail_files
from llmctl.gateway.auth import (
    Authenticator,
    AuthError,
    ensure_dev_issuer,
    groups_from_claims,
    mint_dev_token,
)
from llmctl.gateway.config import (
    AuthConfig,
    GatewayConfig,
    GatewayConfigError,
    config_from_dict,
    load_config,
    write_config,
)
from llmctl.gateway.prompt import (
    CHATML_FRAME,
    NO_SOURCE_ANSWER,
    ChatFrame,
    build_prompt,
    select_hits,
)
from llmctl.gateway.ratelimit import TokenBucketLimiter
from llmctl.gateway.tokens import FallbackCounter

# -- auth ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory):
    """One dev issuer for the module: RSA key generation is the slow part."""
    return ensure_dev_issuer(
        tmp_path_factory.mktemp("dev"), audience="aud-1", groups_claim="groups"
    )


def _mint(dev, **kw) -> str:
    return mint_dev_token(dev.auth_dir.parent, **kw)


def _auth(dev, **changes) -> Authenticator:
    cfg = AuthConfig(issuer=dev.issuer, audience=dev.audience, jwks_path=str(dev.jwks_path))
    return Authenticator(AuthConfig(**{**cfg.__dict__, **changes}))


def test_dev_key_is_private_and_stable(issuer) -> None:
    assert stat.S_IMODE(os.stat(issuer.key_path).st_mode) == 0o600
    jwks = json.loads(issuer.jwks_path.read_text())
    assert "d" not in jwks["keys"][0]  # only the public half is published
    again = ensure_dev_issuer(issuer.auth_dir.parent, audience="aud-1")
    assert again.kid == issuer.kid  # a restart keeps earlier tokens valid


def test_valid_token_gives_subject_and_groups(tmp_path: Path, issuer) -> None:
    tok = _mint(issuer, user="alice", groups=["staff", "hr", "hr"])
    principal = _auth(issuer).authenticate(f"Bearer {tok}")
    assert principal.subject == "alice"
    assert principal.groups == ("hr", "staff")


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "missing"),
        ("Basic abc", "Bearer"),
        ("Bearer not-a-jwt", "malformed"),
    ],
)
def test_missing_or_malformed(issuer, header, reason) -> None:
    with pytest.raises(AuthError, match=reason):
        _auth(issuer).authenticate(header)


def test_rejects_expired_wrong_audience_wrong_issuer_and_foreign_key(
    tmp_path: Path, issuer
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    auth = _auth(issuer, leeway_s=0)
    expired = _mint(issuer, user="a", groups=[], ttl_s=-1)
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(f"Bearer {expired}")
    tok = _mint(issuer, user="a", groups=[])
    with pytest.raises(AuthError):
        _auth(issuer, audience="someone-else").authenticate(f"Bearer {tok}")
    with pytest.raises(AuthError):
        _auth(issuer, issuer="https://other").authenticate(f"Bearer {tok}")
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(tok, options={"verify_signature": False})
    forged = jwt.encode(claims, foreign, algorithm="RS256", headers={"kid": issuer.kid})
    with pytest.raises(AuthError, match="invalid"):
        auth.authenticate(f"Bearer {forged}")


def test_rejects_unsigned_and_hmac_confusion(tmp_path: Path, issuer) -> None:
    tok = _mint(issuer, user="a", groups=["hr"])
    claims = jwt.decode(tok, options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.kid})
    with pytest.raises(AuthError):
        _auth(issuer).authenticate(f"Bearer {unsigned}")
    # HS256 keyed with the public key: the classic algorithm-confusion forgery (signed by hand,
    # since PyJWT itself refuses to use key material as an HMAC secret).
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = b64(json.dumps(claims).encode())
    secret = issuer.jwks_path.read_bytes()
    sig = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    with pytest.raises(AuthError):
        _auth(issuer).authenticate(f"Bearer {(head + b'.' + body + b'.' + sig).decode()}")


def test_anonymous_only_when_allowed(tmp_path: Path, issuer) -> None:
    with pytest.raises(AuthError):
        _auth(issuer).authenticate(None)
    anon = _auth(issuer, allow_anonymous=True, anonymous_groups=("public",)).authenticate(None)
    assert anon.anonymous and anon.groups == ("public",)
    with pytest.raises(AuthError):  # a bad token is never downgraded to anonymous
        _auth(issuer, allow_anonymous=True).authenticate("Bearer garbage")


def test_groups_claim_shapes() -> None:
    assert groups_from_claims({"groups": "hr, staff"}, "groups") == ("hr", "staff")
    assert groups_from_claims({"realm_access": {"roles": ["b", "a"]}}, "realm_access.roles") == (
        "a",
        "b",
    )
    assert groups_from_claims({"groups": {"x": 1}}, "groups") == ()
    assert groups_from_claims({}, "groups") == ()


# -- audit --------------------------------------------------------------------------------------


def _rec(i: int) -> AuditRecord:
    return AuditRecord(
        request_id=f"r{i}",
        time="t",
        endpoint="ask",
        outcome="answered",
        status=200,
        subject=f"u{i}",
    )


def test_audit_concurrent_writers_produce_whole_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", max_bytes=10**9, backups=2)
    threads = [
        threading.Thread(target=lambda k=k: [log.write(_rec(k * 1000 + j)) for j in range(50)])
        for k in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records = read_records(tmp_path / "a.jsonl")
    assert sorted(r["request_id"] for r in records) == sorted(
        f"r{k * 1000 + j}" for k in range(8) for j in range(50)
    )
    assert stat.S_IMODE(os.stat(tmp_path / "a.jsonl").st_mode) == 0o600


def test_audit_rotates_by_size_without_losing_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, max_bytes=2000, backups=50)
    for i in range(100):
        log.write(_rec(i))
    log.close()
    files = trail_files(path)
    assert len(files) > 2 and all(f.name.endswith(".jsonl.gz") for f in files[:-1])
    ids = [r["request_id"] for f in files for r in read_records(f)]
    assert ids == [f"r{i}" for i in range(100)]  # every line, in order, across the archive
    assert all(len(gzip.decompress(f.read_bytes())) <= 2000 for f in files[:-1])
    assert path.stat().st_size <= 2000


# -- rate limit ---------------------------------------------------------------------------------


def test_token_bucket_burst_refill_and_isolation() -> None:
    now = [0.0]
    limiter = TokenBucketLimiter(60, 2, clock=lambda: now[0])  # one token per second
    assert limiter.acquire("alice")[0] and limiter.acquire("alice")[0]
    allowed, wait = limiter.acquire("alice")
    assert not allowed and wait == pytest.approx(1.0)
    assert limiter.acquire("bob")[0]  # buckets are per subject
    now[0] = 1.0
    assert limiter.acquire("alice")[0]
    assert not limiter.acquire("alice")[0]


# -- prompt -------------------------------------------------------------------------------------


BY_3 = FallbackCounter(3)  # ASCII text at 3 characters a token, as the prompt tests assume


def _hit(i: int, score: float, text: str = "x" * 500) -> dict:
    return {
        "doc_id": f"d{i}",
        "chunk_id": f"d{i}#0",
        "title": f"T{i}",
        "heading": "H",
        "path": f"p{i}",
        "text": text,
        "score": score,
        "chunk_hash": f"h{i}",
    }


def test_prompt_keeps_sources_within_budget_and_in_score_order() -> None:
    hits = select_hits([_hit(1, 0.5), _hit(2, 0.9), _hit(3, 0.1), _hit(2, 0.9)], min_score=0.2)
    assert [h["doc_id"] for h in hits] == ["d2", "d1"]  # below min_score and duplicates dropped
    plan = build_prompt("q?", hits, max_input_tokens=10_000, max_source_chars=100, tokens=BY_3)
    assert [s.doc_id for s in plan.sources] == ["d2", "d1"]
    assert "[1] T2 — H: " in plan.text and "[2] T1 — H: " in plan.text
    small = build_prompt("q?", hits, max_input_tokens=150, max_source_chars=700, tokens=BY_3)
    assert len(small.text) <= 150 * 3 and small.prompt_tokens == BY_3.count(small.text) <= 150
    assert [s.doc_id for s in small.sources] == ["d2"]  # the second does not fit: not cited either


def test_no_source_answer_is_not_a_guess() -> None:
    assert "No source available" in NO_SOURCE_ANSWER
    plan = build_prompt("q", [], max_input_tokens=100, max_source_chars=10, tokens=BY_3)
    assert plan.sources == ()


# -- config -------------------------------------------------------------------------------------


def test_config_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    cfg = GatewayConfig(auth=AuthConfig(jwks_path="keys/jwks.json"))
    path = write_config(cfg, tmp_path / "gw.json")
    loaded = load_config(path)
    assert loaded.auth.jwks_path == str(tmp_path / "keys" / "jwks.json")
    assert loaded.limits == cfg.limits
    data = cfg.to_dict()
    data["limits"]["max_request_byte"] = 1
    with pytest.raises(GatewayConfigError, match="max_request_byte"):
        config_from_dict(data)


def test_chat_frame_matches_the_local_chat_template() -> None:
    pytest.importorskip("jinja2")
    from llmctl.local.prompt import CHATML, format_chat

    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert CHATML_FRAME.render("S", "U") == format_chat(messages)
    assert ChatFrame.from_template(CHATML) == CHATML_FRAME
