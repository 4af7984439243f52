"""Who ``llmctl verify`` asks as: simulated employees, the probe user, and what they may read.

The gates act as real users through the gateway's own auth, so access control decides what they
see; the groups come from the blueprint's sources and the corpus ACLs, never from a bypass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llmctl.gates import load, quality
from llmctl.gates.stack import Stack

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint


def doc_acls(bp: Blueprint) -> dict[str, list[str]]:
    """Each document's ACL as ingestion reads it (the ground truth for access checks)."""
    from llmctl.retrieval.documents import read_sources, sources_from_blueprint

    read = read_sources(sources_from_blueprint(bp))
    return {d.doc_id: list(d.acl) for d in read.documents}


def probe_groups(bp: Blueprint) -> list[str]:
    """The broadest groups: the sources' default ACLs (every employee), nothing more."""
    groups = sorted({g for s in bp.retrieval.sources for g in (s.acl or ())})
    return groups or []


def probe_questions(bp: Blueprint, questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the probe user (only the broadest groups) asks.

    The evaluation set's restricted questions; where it has none (or there is no evaluation set),
    one question about each document the broadest groups may not read, by its title, so every
    blueprint with restricted documents has its ACLs probed through the real gateway.
    """
    broad = probe_groups(bp)
    restricted = [q for q in questions if q.get("kind") == "restricted"]
    if not restricted:
        from llmctl.retrieval.documents import read_sources, sources_from_blueprint

        restricted = [
            {
                "id": f"probe-{d.doc_id}",
                "kind": "restricted",
                "question": f"What does {d.title or d.doc_id} say?",
            }
            for d in read_sources(sources_from_blueprint(bp)).documents
            if not set(broad) & set(d.acl)
        ]
    return [dict(q, asker_groups=list(broad)) for q in restricted]


def identities_and_questions(
    bp: Blueprint, target: str, users: int, token_for: Callable[[str, list[str]], str] | None = None
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
