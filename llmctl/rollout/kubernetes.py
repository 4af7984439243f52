"""Rollouts on a kubernetes target: the same sticky, weighted split, rendered as objects.

Why in the gateways and not Argo Rollouts or Gateway API HTTPRoute weights: both split traffic
per request at the edge, before anyone knows who is asking, so a user would switch revisions
mid-conversation; and a canary that differs only in gateway settings (output budget, decoding,
retrieval depth) has no second backend to split to. The gateways decide after authentication,
by subject, exactly as on the local target (``llmctl.gateway.routing``), and llmctl's own gates
judge each step there. What the cluster gets:

* a ``<name>-routing`` ConfigMap with the routing document, mounted as a directory into every
  gateway (the kubelet updates it in place; a step rolls no pod);
* when the canary's model differs, ``<name>-triton-canary``: a second Triton Deployment and
  Service serving the canary's engine/artifact, reached only through the routing's ``llm_url``,
  under the same NetworkPolicies as Triton.

``llmctl rollout BLUEPRINT --target T --weight W`` records the intent (the active revision, the
blueprint's new one, the weight) in ``StackState.rollout_file``; ``llmctl plan``/``up`` render and
apply it (the plan shows the traffic change); ``llmctl rollback`` removes it. Stepping and
judging in a cluster is the operator's loop for now (``verify --url`` between steps).
"""

from __future__ import annotations

import json
import os
from typing import Any

from llmctl.errors import LlmctlError
from llmctl.rollout.revisions import History, Revision, revision_from_config
from llmctl.state import StackState


def _state(bp: Any, target: str) -> StackState:
    return StackState.of(bp.name, target)


def read_intent(bp: Any, target: str) -> dict[str, Any] | None:
    path = _state(bp, target).rollout_file
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LlmctlError(
            f"{path}: unreadable rollout ({exc}); `llmctl rollback` clears it"
        ) from exc


def revision_of_spec(spec: Any) -> Revision:
    """The revision a rendered spec's gateways serve (its gateway config and index spec)."""
    from llmctl.gateway.config import config_from_dict

    config = config_from_dict(
        {k: v for k, v in spec.gateway_config.items() if k not in ("revision", "routing_path")}
    )
    return revision_from_config(config, spec.index_hash)


def record_applied(bp: Any, target: str, spec: Any) -> Revision:
    """After ``llmctl up`` on a kubernetes target: what it applied. Without a rollout it is the
    active revision; with one, the canary is recorded as such."""
    history = History(_state(bp, target).revisions_file)
    intent = read_intent(bp, target)
    if intent is None:
        return history.applied(revision_of_spec(spec))
    canary = Revision(**intent["canary"])
    return history.record(canary, "canary", f"at {intent['weight']:g}% on {target}")


def start(bp: Any, target: str, weight: float, spec: Any) -> dict[str, Any]:
    """Record the intent to serve the blueprint's revision to ``weight`` percent of subjects.

    ``spec`` is the blueprint's own spec for the target, without a rollout applied
    (``llmctl.targets.kubernetes.resolve_spec(..., rollout=False)``)."""
    if not 0 < weight <= 100:
        raise LlmctlError(f"--weight {weight:g}: expected a percentage in 1..100")
    state = _state(bp, target)
    history = History(state.revisions_file)
    stable = history.active()
    if stable is None:
        raise LlmctlError(
            f"no active revision on {target!r}: `llmctl up {bp.path} --target {target}` first"
        )
    path = state.rollout_file
    candidate = revision_of_spec(spec)
    if candidate.id == stable.id:
        raise LlmctlError("the blueprint describes the active revision; nothing to roll out")
    intent = {"stable": stable.to_dict(), "canary": candidate.to_dict(), "weight": float(weight)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(intent, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return intent


def stop(bp: Any, target: str) -> dict[str, Any] | None:
    """Remove the intent (the next ``up`` routes everyone to the stable revision again)."""
    intent = read_intent(bp, target)
    if intent is not None:
        state = _state(bp, target)
        state.rollout_file.unlink()
        History(state.revisions_file).record(
            Revision(**intent["canary"]), "rolled-back", f"rolled back on {target}"
        )
    return intent


def traffic_lines(spec: Any) -> list[str]:
    """What ``plan`` says about the traffic split of a spec."""
    if not getattr(spec, "routing", None):
        return []
    arms = spec.routing["arms"]
    where = "its own Triton Deployment" if spec.canary_engine_hash else "the same model"
    return [
        "traffic: "
        + ", ".join(f"{a['role']} {a['revision']} {a['weight']:g}%" for a in arms)
        + f" (sticky per subject; the canary on {where})"
    ]
