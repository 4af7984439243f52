"""access-control: nobody is shown a document outside their groups, the probe user least of all.

Every cited document of every response is looked up in the corpus ACLs (as ingestion read them);
the probe user, who holds only the broadest groups, asks every restricted question of the
evaluation set and must get zero restricted chunks back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmctl.gates.compliance.base import RequirementContext
from llmctl.gates.results import Check

REQUIREMENT = "access-control"


def applies(ctx: RequirementContext) -> bool:
    return bool(ctx.bp.retrieval.enabled and ctx.evidence.doc_acls)


def check(ctx: RequirementContext) -> list[Check]:
    from llmctl.gates.askers import probe_groups

    return check_access(ctx.responses, ctx.evidence.doc_acls, probe_groups(ctx.bp))


def check_access(
    responses: Sequence[dict[str, Any]],
    doc_acls: dict[str, Sequence[str]],
    broad_groups: Sequence[str] | None = None,
) -> list[Check]:
    """Nothing cited to anyone outside the document's ACL; the probe user got zero restricted chunks.

    With ``broad_groups`` given and no document restricted beyond them, there is nothing for a
    probe to find: the probe check passes and says so (every response is still checked)."""
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
    broad = set(broad_groups or ())
    nothing_restricted = broad_groups is not None and all(broad & set(a) for a in doc_acls.values())
    checks = [
        Check(
            "access-control.probe-user",
            True,
            f"no document is restricted beyond {sorted(broad)}: nothing for a probe user to find",
            value=0,
            threshold=0,
            evidence="access control: a user with only the broadest group asks every restricted question",
        )
        if nothing_restricted and not probe
        else Check(
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
