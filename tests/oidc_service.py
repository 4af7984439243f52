"""An OIDC-style token service for tests: real HTTP, real RS256 signatures, client credentials.

Why a small Starlette app rather than a package: no OAuth2 *server* package is installed here
(``pip list`` has PyJWT and cryptography, no Authlib, oauthlib or mock-OIDC server), and what the
tests need is small and must be exact: a discovery document, a JWKS the gateway fetches over
HTTP, and the client credentials grant (RFC 6749 4.4, client_secret_basic) with the impersonation
parameters ``requested_subject`` / ``requested_groups`` that ``llmctl.gates.identity`` sends.
Keys are generated per service, so nothing signed by another issuer (the dev issuer) verifies.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class TokenService:
    """One issuer: an RSA key, the clients it knows, and the Starlette app serving them."""

    def __init__(self, audience: str, *, ttl_s: int = 900) -> None:
        self.audience = audience
        self.ttl_s = ttl_s
        self.issuer = ""  # set once the server's URL is known (``bind``)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        self.clients: dict[str, str] = {}  # client id -> secret
        self.issued: list[dict[str, Any]] = []  # claims of every token issued
        self.jwks_fetches = 0
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    def bind(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.issuer = self.url

    def add_client(self, client_id: str) -> str:
        secret = secrets.token_urlsafe(24)
        self.clients[client_id] = secret
        return secret

    async def discovery(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": [jwk]})

    def _client(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        known = self.clients.get(client_id)
        return client_id if known and secrets.compare_digest(known, secret) else None

    async def token(self, request: Request) -> JSONResponse:
        client_id = self._client(request)
        if client_id is None:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "unknown client or bad secret"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="token"'},
            )
        # parsed here: Starlette's form parser needs python-multipart, not installed
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": str(form.get("audience") or self.audience),
            "sub": str(form.get("requested_subject") or client_id),
            "azp": client_id,
            "groups": str(form.get("requested_groups") or "").split(),
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        self.issued.append(claims)
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl_s},
            headers={"Cache-Control": "no-store"},
        )
