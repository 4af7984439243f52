"""LLM-NET-002: callers are authenticated unless the blueprint explicitly allows anonymous access.

``auth.mode: none`` without ``allowAnonymous: true`` is an error (a forgotten setting must not
open the service); allowing anonymous access is a warning, so it is seen in every check.

Passing::

    network: {auth: {mode: oidc, issuer: https://login.example.com, audience: hr-assistant}}

Failing::

    network: {auth: {mode: none}}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-NET-002"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    auth = ctx.bp.network.auth
    if auth.mode == "none" and not auth.allow_anonymous:
        yield ctx.problem(
            ("network", "auth", "mode"),
            "auth mode is none but allowAnonymous is not set; use mode: oidc, or set "
            "allowAnonymous: true if anyone may really use the service",
        )
    elif auth.allow_anonymous:
        yield ctx.problem(
            ("network", "auth", "allowAnonymous"),
            "anonymous access is allowed: callers without a token can use the service "
            "(they only see documents readable by everyone)",
            severity="warning",
        )
