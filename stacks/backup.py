"""Scheduled VolumeSnapshots of the index and audit volumes: the cluster's ``llmctl backup``.

The two claims hold what cannot be rebuilt quickly (the index: re-embedding a corpus) or at all
(the audit trail: compliance evidence). A CronJob takes a ``snapshot.storage.k8s.io/v1``
VolumeSnapshot of each, ``SCHEDULE`` (daily, 03:00 UTC), and keeps the newest ``KEEP`` per claim.
The blueprint has no operations section to name another schedule or retention, so these are the
documented defaults. No ``volumeSnapshotClassName`` is set: the cluster's default class for the
claims' CSI driver applies (the claims' StorageClass must be backed by a snapshot-capable driver).

The snapshot objects are rendered here, once, into the CronJob's ConfigMap; the job
(``python -m llmctl.ops.snapshots`` in the gateway image, since no kubectl image is available
offline) creates them under a timestamped name. Rendering them as stack resources instead would
make Pulumi own one snapshot per claim, taken at the first ``up`` of an empty volume and deleted
on ``down``.

Least privilege: the job's ServiceAccount has no automatic token, only a projected short-lived
one, and a Role in the stack's namespace allowing create/get/list/delete on volumesnapshots,
nothing else; its network policy allows only the API server's ports (443, 6443), to the private
ranges under private data residency. The pod runs under the same restricted security context as
every other container here.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import base
from .gateway import file_sink
from .network import PRIVATE_RANGES
from .spec import StackSpec

COMPONENT = "backup"
SCHEDULE = "0 3 * * *"
TIME_ZONE = "Etc/UTC"
KEEP = 7
API_SERVER_PORTS = (443, 6443)
#: Marks the one egress policy that exists to reach the Kubernetes API server (see
#: llmctl/gates/compliance/residency.py, which holds it to private ranges and these ports).
API_EGRESS_ANNOTATION = "llmctl.dev/egress-purpose"
#: where ``llmctl.ops.snapshots`` reads its token and CA (its TOKEN_DIR)
TOKEN_DIR = "/var/run/secrets/llmctl-backup"
TEMPLATES_DIR = "/etc/llmctl-backup"
TEMPLATES_FILE = "snapshots.json"
RULES = [
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshots"],
        "verbs": ["create", "get", "list", "delete"],
    }
]


def claims(spec: StackSpec) -> list[str]:
    """The PersistentVolumeClaims the stack creates for the index and the audit trail."""
    out = [base.name(spec, "index")] if spec.retrieval_enabled else []
    return out + ([base.name(spec, "audit")] if file_sink(spec) else [])


def snapshot_templates(spec: StackSpec) -> list[dict[str, Any]]:
    """One VolumeSnapshot per claim, as the job creates it (it appends a timestamp to the name)."""
    return [
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": base.metadata(spec, claim, COMPONENT),
            "spec": {"source": {"persistentVolumeClaimName": claim}},
        }
        for claim in claims(spec)
    ]


def apiserver_policy(spec: StackSpec) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": p} for p in API_SERVER_PORTS]}
    if spec.private:
        rule["to"] = [{"ipBlock": {"cidr": c}} for c in PRIVATE_RANGES]
    return {
        "podSelector": {"matchLabels": base.selector(spec, COMPONENT)},
        "policyTypes": ["Egress"],
        "egress": [rule],
    }


def backup_pod_spec(spec: StackSpec, config_map: str) -> dict[str, Any]:
    tmp_vol, tmp_mount = base.tmp_volume()
    token = {
        "name": "token",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
            ]
        },
    }
    container = {
        "name": COMPONENT,
        "image": spec.gateway_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "llmctl.ops.snapshots"],
        "args": [
            "--templates",
            f"{TEMPLATES_DIR}/{TEMPLATES_FILE}",
            "--namespace",
            spec.namespace,
            "--keep",
            str(KEEP),
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": base.resources("50m", "64Mi", cpu_limit="200m", memory_limit="128Mi"),
        "securityContext": base.container_security_context(),
        "volumeMounts": [
            {"name": "templates", "mountPath": TEMPLATES_DIR, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            tmp_mount,
        ],
    }
    return {
        "serviceAccountName": base.name(spec, COMPONENT),
        "automountServiceAccountToken": False,
        "securityContext": base.pod_security_context(),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "templates", "configMap": {"name": config_map}}, token, tmp_vol],
    }


class Backup(pulumi.ComponentResource):
    """ServiceAccount, Role and RoleBinding, the snapshot templates, the egress rule, the CronJob."""

    def __init__(self, spec: StackSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llmctl:k8s:Backup", base.name(spec, "backup-stack"), None, opts)
        name = base.name(spec, COMPONENT)
        templates = snapshot_templates(spec)
        if not templates:
            self.register_outputs({})
            return
        account = k8s.core.v1.ServiceAccount(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            automount_service_account_token=False,
            opts=base.child(self),
        )
        role = k8s.rbac.v1.Role(
            name, metadata=base.metadata(spec, name, COMPONENT), rules=RULES, opts=base.child(self)
        )
        binding = k8s.rbac.v1.RoleBinding(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": spec.namespace}],
            opts=base.child(self, [account, role]),
        )
        config = k8s.core.v1.ConfigMap(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            data={TEMPLATES_FILE: json.dumps(templates, indent=2, sort_keys=True) + "\n"},
            opts=base.child(self),
        )
        policy_name = base.name(spec, "backup-to-apiserver")
        k8s.networking.v1.NetworkPolicy(
            policy_name,
            metadata=base.metadata(
                spec,
                policy_name,
                "network-policy",
                # read by the residency gate: control-plane access, not data egress
                extra_annotations={API_EGRESS_ANNOTATION: "kubernetes-api"},
            ),
            spec=apiserver_policy(spec),
            opts=base.child(self),
        )
        labels = base.labels(spec, COMPONENT)
        self.cron_job = k8s.batch.v1.CronJob(
            name,
            metadata=base.metadata(spec, name, COMPONENT),
            spec={
                "schedule": SCHEDULE,
                "timeZone": TIME_ZONE,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "backoffLimit": 2,
                        "activeDeadlineSeconds": 600,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": backup_pod_spec(spec, name),
                        },
                    },
                },
            },
            opts=base.child(self, [binding, config]),
        )
        self.register_outputs({"cron_job": self.cron_job.metadata["name"], "claims": claims(spec)})
