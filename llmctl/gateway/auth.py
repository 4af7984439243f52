"""Who is calling: OIDC-style bearer JWTs checked against a JWKS, and the local dev issuer.

Production uses the organisation's identity provider (issuer + JWKS URL from the blueprint). The
local target has no identity provider, so ``llmctl up`` makes a development issuer: one RSA key in
the stack's state dir (0600) and its public half as a JWKS file. The gateway code path is the same
on both: it only ever sees a JWKS, never a private key.

RS256 rather than ES256 for the dev key because verification (per request, in the gateway) is
several times cheaper for RSA; signing (per ``llmctl token``) is rare.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWK, PyJWKSet

from llmctl.errors import LlmctlError
from llmctl.gateway.config import AuthConfig
from llmctl.state import StackState

DEV_KEY_FILE = "dev-signing-key.pem"
DEV_JWKS_FILE = "dev-jwks.json"
DEV_ISSUER_FILE = "dev-issuer.json"


class AuthError(Exception):
    """The request is not authenticated; the message is safe to return (no token echoed)."""


class AuthSetupError(LlmctlError):
    """The dev issuer's keys are missing or unusable."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller; ``groups`` is what the index prefilter sees, nothing else."""

    subject: str
    groups: tuple[str, ...]
    anonymous: bool = False


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def groups_from_claims(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """Groups as a sorted tuple; identity providers send lists or comma/space separated strings."""
    raw = _claim(claims, claim)
    if raw is None:
        return ()
    if isinstance(raw, str):
        items = raw.replace(",", " ").split()
    elif isinstance(raw, list | tuple):
        items = [str(x) for x in raw if isinstance(x, str | int)]
    else:
        return ()
    return tuple(sorted({g.strip() for g in items if g.strip()}))


class JWKSource:
    """The verification keys, from a file (re-read when it changes) or a URL (cached, timed out).

    A token whose ``kid`` is unknown triggers one refresh (keys rotate at the identity provider),
    but at most every ``min_refresh_s`` so bad tokens cannot make us hammer the provider.
    """

    def __init__(self, config: AuthConfig, *, min_refresh_s: float = 30.0) -> None:
        self._path = Path(config.jwks_path) if config.jwks_path else None
        self._url = config.jwks_url
        self._timeout = config.jwks_timeout_s
        self._ttl = config.jwks_cache_s
        self._min_refresh = min_refresh_s
        self._lock = threading.Lock()
        self._keys: dict[str | None, PyJWK] = {}
        self._loaded_at = 0.0
        self._last_try = 0.0
        self._mtime: float | None = None

    def needs_refresh(self) -> bool:
        now = time.monotonic()
        if not self._keys:
            return now - self._last_try >= 1.0 or self._last_try == 0.0
        if self._path is not None:
            return now - self._loaded_at >= 2.0  # a stat every 2 s notices a rewritten file
        return now - self._loaded_at >= self._ttl

    def refresh(self, *, force: bool = False) -> None:
        """Reload keys; blocking (file read or HTTP fetch), so callers run it off the event loop."""
        with self._lock:
            now = time.monotonic()
            if force and now - self._last_try < self._min_refresh:
                return
            if not force and not self.needs_refresh():
                return
            self._last_try = now
            try:
                if self._path is not None:
                    mtime = self._path.stat().st_mtime
                    if mtime == self._mtime and self._keys:
                        self._loaded_at = now
                        return
                    data = json.loads(self._path.read_text(encoding="utf-8"))
                    self._mtime = mtime
                else:
                    data = self._fetch()
                keyset = PyJWKSet.from_dict(data)
            except Exception:  # keep serving with the old keys; a missing set fails closed below
                return
            self._keys = {k.key_id: k for k in keyset.keys}
            self._loaded_at = now

    def _fetch(self) -> dict[str, Any]:
        import httpx

        assert self._url is not None
        response = httpx.get(self._url, timeout=self._timeout, follow_redirects=False)
        response.raise_for_status()
        return response.json()

    def key_for(self, kid: str | None) -> PyJWK | None:
        keys = self._keys
        if kid is not None:
            return keys.get(kid)
        if len(keys) == 1:
            return next(iter(keys.values()))
        return None

    @property
    def is_remote(self) -> bool:
        return self._url is not None


class Authenticator:
    """Turns an Authorization header into a Principal or raises AuthError."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.keys = JWKSource(config) if config.mode == "oidc" else None

    def may_block(self) -> bool:
        """True when the next call may block on a file or the network (run it in a thread).

        With a JWKS URL any unknown ``kid`` may trigger a fetch, so that mode always says yes.
        """
        if self.keys is None:
            return False
        return self.keys.is_remote or self.keys.needs_refresh()

    def authenticate(self, authorization: str | None) -> Principal:
        cfg = self.config
        if cfg.mode == "none":
            return Principal("anonymous", tuple(sorted(cfg.anonymous_groups)), anonymous=True)
        if not authorization:
            if cfg.allow_anonymous:
                return Principal("anonymous", tuple(sorted(cfg.anonymous_groups)), anonymous=True)
            raise AuthError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("expected 'Authorization: Bearer <token>'")
        claims = self.verify(token)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("token has no subject")
        return Principal(subject, groups_from_claims(claims, cfg.groups_claim))

    def verify(self, token: str) -> dict[str, Any]:
        assert self.keys is not None
        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        kid = header.get("kid")
        self.keys.refresh()
        key = self.keys.key_for(kid)
        if key is None:
            self.keys.refresh(force=True)
            key = self.keys.key_for(kid)
        if key is None:
            raise AuthError("unknown signing key")
        alg = header.get("alg")
        allowed = [a for a in cfg.algorithms if key.algorithm_name in (None, a)]
        if alg not in allowed:
            raise AuthError("token algorithm not allowed")
        required = (
            ["exp", "sub"] + (["iss"] if cfg.issuer else []) + (["aud"] if cfg.audience else [])
        )
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid token") from exc


# --- the local development issuer -------------------------------------------------------------


@dataclass(frozen=True)
class DevIssuer:
    """Paths and names of the development issuer of one local stack."""

    auth_dir: Path
    issuer: str
    audience: str
    groups_claim: str
    kid: str

    @property
    def key_path(self) -> Path:
        return self.auth_dir / DEV_KEY_FILE

    @property
    def jwks_path(self) -> Path:
        return self.auth_dir / DEV_JWKS_FILE


def ensure_dev_issuer(
    state_dir: str | os.PathLike[str],
    *,
    issuer: str | None = None,
    audience: str = "llmctl",
    groups_claim: str = "groups",
) -> DevIssuer:
    """Create (once) the dev signing key (0600) and its JWKS in ``<state_dir>/auth``.

    Idempotent: an existing key is kept so tokens minted before a restart stay valid; the issuer
    settings are rewritten so a changed blueprint (audience, groups claim) takes effect.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    auth_dir = StackState.at(state_dir).auth_dir
    auth_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(auth_dir, 0o700)
    key_path = auth_dir / DEV_KEY_FILE
    if key_path.exists():
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
    os.chmod(key_path, 0o600)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    kid = _thumbprint(public_jwk)
    public_jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    _write_json(auth_dir / DEV_JWKS_FILE, {"keys": [public_jwk]})
    resolved_issuer = issuer or dev_issuer_name(state_dir)
    settings = {
        "issuer": resolved_issuer,
        "audience": audience,
        "groups_claim": groups_claim,
        "kid": kid,
    }
    _write_json(auth_dir / DEV_ISSUER_FILE, settings)
    return DevIssuer(auth_dir, resolved_issuer, audience, groups_claim, kid)


def dev_issuer_name(state_dir: str | os.PathLike[str]) -> str:
    """The dev issuer's ``iss``: unique per stack folder, so one stack's tokens fail on another."""
    return f"llmctl-dev:{Path(state_dir).resolve()}"


def load_dev_issuer(state_dir: str | os.PathLike[str]) -> DevIssuer:
    auth_dir = StackState.at(state_dir).auth_dir
    try:
        settings = json.loads((auth_dir / DEV_ISSUER_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AuthSetupError(
            f"{auth_dir}: no development issuer here; start the stack with `llmctl up` first"
        ) from exc
    return DevIssuer(
        auth_dir,
        settings["issuer"],
        settings["audience"],
        settings["groups_claim"],
        settings["kid"],
    )


def mint_dev_token(
    state_dir: str | os.PathLike[str],
    *,
    user: str,
    groups: Sequence[str],
    ttl_s: int = 3600,
) -> str:
    """Sign a token for ``user`` with the stack's dev key (local target only)."""
    dev = load_dev_issuer(state_dir)
    try:
        st = dev.key_path.stat()
        private_key = _dev_key(str(dev.key_path), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise AuthSetupError(f"{dev.key_path}: cannot read the dev signing key: {exc}") from exc
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": dev.issuer,
        "aud": dev.audience,
        "sub": user,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
        "jti": uuid.uuid4().hex,
    }
    _set_claim(claims, dev.groups_claim, sorted({g for g in groups if g}))
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": dev.kid})


@functools.lru_cache(maxsize=8)
def _dev_key(path: str, mtime_ns: int, size: int) -> Any:
    """The dev signing key, parsed once per file version: loading a PEM RSA key checks it
    (~25 ms), which made every minted token cost that much (load and verify mint hundreds)."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def _set_claim(claims: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = claims
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint: a kid that changes exactly when the key does."""
    import base64
    import hashlib

    canonical = json.dumps(
        {k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
