"""LLM-K8S-001: a kubernetes target's namespace is a valid DNS-1123 label and not a system one.

The schema checks a namespace that is written; this rule also covers the default (the service
name) and refuses namespaces that belong to the cluster itself.

Passing::

    targets: {prod: {type: kubernetes, namespace: hr-assistant}}

Failing::

    targets: {prod: {type: kubernetes, namespace: kube-system}}
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-K8S-001"
SEVERITY = "error"

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SYSTEM = {"kube-system", "kube-public", "kube-node-lease", "default"}


def check(ctx: RuleContext) -> Iterator[Problem]:
    for name, target in ctx.bp.targets.items():
        if target.type != "kubernetes":
            continue
        path = ("targets", name, "namespace")
        if not _DNS1123.match(target.namespace):
            yield ctx.problem(
                path,
                f"namespace '{target.namespace}' is not a DNS-1123 label (lowercase letters, "
                "digits and '-', at most 63 characters)",
            )
        elif target.namespace in _SYSTEM:
            yield ctx.problem(
                path,
                f"namespace '{target.namespace}' belongs to the cluster; give the service its own",
            )
