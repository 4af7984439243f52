"""The backup CronJob's program: VolumeSnapshots of the index and audit claims, newest N kept.

Why this and not ``kubectl``: no kubectl-capable image is available offline, while the gateway
image already holds llmctl; this needs only the standard library, because the API server is one
HTTPS endpoint. The pod mounts no automatic ServiceAccount token: it gets a projected, short-lived
one (``TOKEN_DIR``), whose Role allows only create/get/list/delete on volumesnapshots in its own
namespace (``stacks/backup.py``). The snapshots are crash-consistent, which both volumes are
built for: LanceDB commits a version by writing one manifest last, and the audit trail is
fsynced whole lines.

Each run creates one snapshot per template (the rendered VolumeSnapshot objects in the CronJob's
ConfigMap), named ``<template name>-<UTC time>`` and labelled with the template name, then
deletes that template's snapshots beyond the newest ``--keep``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import ssl
import sys
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

TOKEN_DIR = "/var/run/secrets/llmctl-backup"
SNAPSHOT_OF = "llmctl.dev/snapshot-of"
API = "/apis/snapshot.storage.k8s.io/v1/namespaces/{namespace}/volumesnapshots"

#: (method, path, body) -> the decoded JSON answer
Request = Callable[[str, str, dict[str, Any] | None], dict[str, Any]]


def snapshot_from(template: dict[str, Any], stamp: str) -> dict[str, Any]:
    """The snapshot one run creates from a rendered template: a unique name, a label to find
    its siblings by."""
    snap = copy.deepcopy(template)
    base = snap["metadata"]["name"]
    snap["metadata"]["name"] = f"{base}-{stamp}"
    snap["metadata"].setdefault("labels", {})[SNAPSHOT_OF] = base
    return snap


def beyond_keep(items: Sequence[dict[str, Any]], keep: int) -> list[str]:
    """Names of the snapshots to delete: all but the newest ``keep`` (by creation time)."""

    def created(item: dict[str, Any]) -> tuple[str, str]:
        meta = item.get("metadata") or {}
        return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    ordered = sorted(items, key=created, reverse=True)
    return [str(i["metadata"]["name"]) for i in ordered[max(0, keep) :]]


def run(
    templates: Sequence[dict[str, Any]],
    namespace: str,
    keep: int,
    request: Request,
    stamp: str | None = None,
) -> list[str]:
    """Take one snapshot per template and prune; returns what was done, one line each."""
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    api = API.format(namespace=namespace)
    done = []
    for template in templates:
        snap = snapshot_from(template, stamp)
        request("POST", api, snap)
        done.append(f"created {snap['metadata']['name']}")
        base = template["metadata"]["name"]
        listed = request("GET", f"{api}?labelSelector={SNAPSHOT_OF}%3D{base}", None)
        for name in beyond_keep(listed.get("items") or [], keep):
            request("DELETE", f"{api}/{name}", None)
            done.append(f"deleted {name} (beyond the newest {keep})")
    return done


def in_cluster_request(token_dir: str = TOKEN_DIR) -> Request:
    """Requests to the API server with the pod's projected token and the cluster's CA."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    context = ssl.create_default_context(cafile=os.path.join(token_dir, "ca.crt"))

    def request(method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        with open(os.path.join(token_dir, "token"), encoding="ascii") as fh:
            token = fh.read().strip()  # re-read: the kubelet rotates a projected token
        req = urllib.request.Request(
            f"https://{host}:{port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, context=context, timeout=30) as resp:
            return dict(json.loads(resp.read() or b"{}"))

    return request


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m llmctl.ops.snapshots --templates FILE --namespace NS --keep N``."""
    parser = argparse.ArgumentParser(prog="llmctl.ops.snapshots", description=__doc__)
    parser.add_argument("--templates", required=True, help="JSON list of VolumeSnapshot objects")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--keep", type=int, default=7)
    args = parser.parse_args(argv)
    with open(args.templates, encoding="utf-8") as fh:
        templates = json.load(fh)
    try:
        for line in run(templates, args.namespace, args.keep, in_cluster_request()):
            print(line, flush=True)
    except OSError as exc:  # urllib's HTTPError and URLError are OSErrors
        print(f"snapshot failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
