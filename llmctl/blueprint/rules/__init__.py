"""Semantic rules: what the schema cannot say. One module per rule, registered here explicitly.

Each module has a stable ``RULE_ID`` (``LLM-<AREA>-NNN``), a ``SEVERITY``, a docstring with a
passing and a failing example, and ``check(ctx)`` yielding problems. Tests run every rule against
``tests/fixtures/rules/<RULE_ID>/{pass,fail}.yaml``.
"""

from __future__ import annotations

from llmctl.blueprint.model import Blueprint
from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules import (
    audit_sink,
    auth_required,
    citations_retrieval,
    engine_backend,
    gates_vs_slo,
    ingress_world,
    k8s_namespace,
    model_context,
    model_fits_gpu,
    replicas_bounds,
    residency_egress,
    residency_endpoint,
    retrieval_sources,
    sensitive_acl,
    slo_budget,
    target_local,
    tensor_parallel_heads,
    training_data,
    training_partition,
    training_time,
    users_in_flight,
)
from llmctl.blueprint.rules.base import Rule, RuleContext
from llmctl.blueprint.yamlpos import Located

_MODULES = (
    model_context,
    tensor_parallel_heads,
    engine_backend,
    model_fits_gpu,
    residency_egress,
    residency_endpoint,
    citations_retrieval,
    audit_sink,
    sensitive_acl,
    slo_budget,
    gates_vs_slo,
    ingress_world,
    auth_required,
    replicas_bounds,
    users_in_flight,
    k8s_namespace,
    target_local,
    retrieval_sources,
    training_partition,
    training_time,
    training_data,
)

RULES: tuple[Rule, ...] = tuple(
    Rule(
        id=m.RULE_ID,
        severity=m.SEVERITY,  # type: ignore[arg-type]
        check=m.check,
        summary=(m.__doc__ or "").strip().splitlines()[0].split(": ", 1)[-1],
    )
    for m in _MODULES
)


def run_rules(bp: Blueprint, located: Located) -> list[Problem]:
    problems: list[Problem] = []
    for rule in RULES:
        ctx = RuleContext(bp=bp, located=located, rule_id=rule.id, severity=rule.severity)
        problems.extend(rule.check(ctx))
    return problems
