"""Where ``llmctl verify`` gets its callers' bearer tokens: a token source, in memory only.

Verify acts as real users (the evaluation set's askers, the load users, the probe user, the
auditor), so the gateway's own auth and ACLs decide what they see. A deployed gateway trusts only
the organisation's identity provider, so its tokens must come from there:

- ``CommandTokenSource`` (``--token-command 'CMD'``): a program that prints a bearer token, with
  ``{user}`` and ``{groups}`` (comma-separated) substituted. It is split with ``shlex`` first and
  substituted per argument, then run without a shell, so a user or group name cannot inject
  anything. This is how a team wraps an identity provider verify knows nothing about.
- ``ClientCredentialsTokenSource``: the OAuth2 client credentials grant against the blueprint's
  ``network.auth.tokenUrl``, the client id and secret read from the environment variables the
  blueprint names (``clientIdEnv``, ``clientSecretEnv``; a blueprint never holds a secret). The
  identity goes along as ``requested_subject`` and ``requested_groups``, the impersonation
  parameters of providers that support it; a token for anyone else is refused, one line.
- ``DevTokenSource``: the local stack's development issuer, as ``llmctl token`` uses.

Tokens are kept in memory (cached per identity until a minute before they expire) and never
written: the evidence records identities and token hashes only (``LoadSpec.record``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmctl.errors import LlmctlError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint

COMMAND_TIMEOUT_S = 30.0
REFRESH_BEFORE_S = 60.0  # a cached token this close to its expiry is fetched again


class TokenSource(Protocol):
    """Anything that hands verify a bearer token for a subject with given groups."""

    description: str

    def token_for(self, user: str, groups: list[str]) -> str: ...


def _claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT, {} for an opaque token (only for expiry and subject)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


class _Cache:
    """Tokens per identity until shortly before they expire; thread-safe (the gates ask in
    parallel), one fetch per identity at a time."""

    def __init__(self, fetch: Callable[[str, list[str]], str]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = {}

    def get(self, user: str, groups: Sequence[str]) -> str:
        key = (user, tuple(groups))
        with self._lock:
            hit = self._tokens.get(key)
            if hit is not None and hit[1] - time.time() > REFRESH_BEFORE_S:
                return hit[0]
        token = self._fetch(user, list(groups))
        exp = _claims(token).get("exp")
        expires = float(exp) if isinstance(exp, int | float) else float("inf")
        with self._lock:
            self._tokens[key] = (token, expires)
        return token


class CommandTokenSource:
    """``--token-command``: one run of the command per identity (see the module docstring)."""

    def __init__(self, template: str, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        try:
            self.argv = shlex.split(template)
        except ValueError as exc:
            raise LlmctlError(f"--token-command cannot be split into arguments: {exc}") from None
        if not self.argv:
            raise LlmctlError("--token-command is empty; give a program that prints a token")
        self.timeout_s = timeout_s
        self.description = f"token command {self.argv[0]}"
        self._cache = _Cache(self._run)

    def token_for(self, user: str, groups: list[str]) -> str:
        return self._cache.get(user, groups)

    def _run(self, user: str, groups: list[str]) -> str:
        joined = ",".join(groups)
        argv = [a.replace("{user}", user).replace("{groups}", joined) for a in self.argv]
        who = f"user {user!r} (groups {joined or 'none'})"
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise LlmctlError(
                f"token command {argv[0]!r} not found; check --token-command and PATH"
            ) from None
        except subprocess.TimeoutExpired:
            raise LlmctlError(
                f"token command {argv[0]!r} gave no token for {who} within {self.timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise LlmctlError(f"token command {argv[0]!r} cannot run: {exc.strerror}") from None
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise LlmctlError(
                f"token command {argv[0]!r} exited {done.returncode} for {who}: {why}"
            )
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        token = lines[-1] if lines else ""
        if not token or any(c.isspace() for c in token):
            raise LlmctlError(
                f"token command {argv[0]!r} printed no token for {who}; it must print the "
                "bearer token alone on its last line"
            )
        return token


class ClientCredentialsTokenSource:
    """OAuth2 client credentials at ``token_url``, the identity as requested_subject/groups."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.token_url = token_url
        self.audience = audience
        self.timeout_s = timeout_s
        self._auth = (client_id, client_secret)
        self.description = f"OAuth2 client credentials at {token_url}"
        self._cache = _Cache(self._fetch)

    @classmethod
    def from_blueprint(
        cls, bp: Blueprint, environ: Mapping[str, str] | None = None
    ) -> ClientCredentialsTokenSource:
        """The source ``network.auth`` describes; the credentials come from the environment."""
        env = os.environ if environ is None else environ
        auth = bp.network.auth
        assert auth.token_url is not None
        values = []
        for field, name in (
            ("clientIdEnv", auth.client_id_env),
            ("clientSecretEnv", auth.client_secret_env),
        ):
            if not name:
                raise LlmctlError(
                    f"network.auth.tokenUrl is set but network.auth.{field} is not; name the "
                    "environment variable that holds it"
                )
            if not env.get(name):
                raise LlmctlError(
                    f"environment variable {name} (network.auth.{field}) is not set; export it "
                    "(in CI: from a secret) or pass --token-command"
                )
            values.append(env[name])
        return cls(auth.token_url, values[0], values[1], audience=auth.audience)

    def token_for(self, user: str, groups: list[str]) -> str:
        return self._cache.get(user, groups)

    def _fetch(self, user: str, groups: list[str]) -> str:
        import httpx

        form = {
            "grant_type": "client_credentials",
            "requested_subject": user,
            "requested_groups": " ".join(groups),
        }
        if self.audience:
            form["audience"] = self.audience
        try:
            r = httpx.post(self.token_url, data=form, auth=self._auth, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise LlmctlError(
                f"token endpoint {self.token_url} unreachable: {type(exc).__name__}; check "
                "network.auth.tokenUrl"
            ) from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            detail = (
                body.get("error_description") or body.get("error")
                if isinstance(body, dict)
                else None
            )
            raise LlmctlError(
                f"token endpoint {self.token_url} answered HTTP {r.status_code}"
                + (f" ({detail})" if detail else "")
                + f" for user {user!r}; check the client id and secret in the environment"
            )
        token = str(body["access_token"])
        sub = _claims(token).get("sub")
        if sub is not None and sub != user:
            raise LlmctlError(
                f"token endpoint {self.token_url} issued a token for {sub!r}, not {user!r}: the "
                "client must be allowed to request tokens for test identities (requested_subject)"
            )
        return token


class DevTokenSource:
    """The local stack's development issuer (what ``llmctl token`` signs with)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.description = f"development issuer of {state_dir}"

    def token_for(self, user: str, groups: list[str]) -> str:
        from llmctl.gateway.auth import mint_dev_token

        return mint_dev_token(self.state_dir, user=user, groups=groups, ttl_s=7200)


def token_source(bp: Blueprint, target: str, *, token_command: str | None = None) -> TokenSource:
    """The token source for ``target``: the command when given, else the blueprint's token
    endpoint, else (local targets) the stack's dev issuer; one line saying what to do otherwise."""
    if token_command:
        return CommandTokenSource(token_command)
    if bp.network.auth.token_url:
        return ClientCredentialsTokenSource.from_blueprint(bp)
    spec = bp.target(target)
    if spec.is_local:
        from llmctl.state import StackState

        return DevTokenSource(StackState.of(bp.name, target).dir)
    raise LlmctlError(
        f"target {target!r} needs tokens from its identity provider: pass --token-command "
        "'CMD {user} {groups}' or set network.auth.tokenUrl, clientIdEnv and clientSecretEnv"
    )
