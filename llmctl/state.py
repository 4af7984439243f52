"""Where stacks keep their state: the one owner of ``$LLMCTL_HOME`` and its layout.

Every verb that finds a running stack, its index, its logs or its dev issuer resolves the path
here, so ``up``, ``ingest``, ``ask``, ``status``, ``verify`` and ``down`` always agree on the
folder of a blueprint's target (docs/CONTRACTS.md, "Places on disk")::

    $LLMCTL_HOME/                    default ./.llmctl in the working directory
      <blueprint>/<target>/          one folder per blueprint name and target name
        components/<name>.json       what the supervisor started (pid, process group, ports)
        logs/<name>.log              each component's output
        models/  backends/           Triton's model repository and python backend links
        gateway/config.json          the gateway's resolved configuration
        auth/                        the dev issuer's signing key (0600) and JWKS, the audit's
                                     question key ring (question-keys.json, 0600)
        audit/audit.jsonl            the audit trail
        index/                       the LanceDB index
        stack.json  .lock            the applied plan; serialises up/down
      pulumi/                        Pulumi's file backend for kubernetes targets
      <blueprint>/_training/         training runs of a blueprint, whatever the target
        history.jsonl                one run record per finished job (append-only)
        jobs/                        <job id>.sbatch, <job id>.json (submitted), slurm's
                                     llmctl-train-<job id>.out; the folder sbatch runs in
        artifacts/job-<job id>/      the run's artifact, unless training.output names another place
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "LLMCTL_HOME"


def llmctl_home() -> Path:
    """``$LLMCTL_HOME`` as an absolute path (``~`` expanded), default ``./.llmctl``."""
    return Path(os.environ.get(ENV_HOME) or Path.cwd() / ".llmctl").expanduser().resolve()


@dataclass(frozen=True)
class StackState:
    """The state folder of one blueprint's target. Creating one touches nothing on disk."""

    blueprint: str
    target: str
    home: Path

    @classmethod
    def of(cls, blueprint: str, target: str, home: Path | None = None) -> StackState:
        return cls(blueprint, target, (home or llmctl_home()).expanduser().resolve())

    @classmethod
    def at(cls, folder: str | os.PathLike[str]) -> StackState:
        """The layout of the folder ``folder`` (``<home>/<blueprint>/<target>``), taken as given:
        not resolved, because it may be a path inside a pod (``/var/lib/llmctl``)."""
        path = Path(folder).expanduser()
        return cls(path.parent.name, path.name, path.parent.parent)

    @property
    def dir(self) -> Path:
        return self.home / self.blueprint / self.target

    @property
    def index_dir(self) -> Path:
        return self.dir / "index"

    @property
    def logs_dir(self) -> Path:
        return self.dir / "logs"

    def log_file(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def gateway_config(self) -> Path:
        return self.dir / "gateway" / "config.json"

    @property
    def gateway_port_file(self) -> Path:
        """The gateway's port, chosen once, so re-planning an unchanged stack changes nothing."""
        return self.dir / "gateway" / "port"

    @property
    def auth_dir(self) -> Path:
        return self.dir / "auth"

    @property
    def audit_file(self) -> Path:
        return self.dir / "audit" / "audit.jsonl"

    @property
    def stack_file(self) -> Path:
        return self.dir / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.dir / ".lock"

    @property
    def components_dir(self) -> Path:
        return self.dir / "components"

    @property
    def models_dir(self) -> Path:
        return self.dir / "models"

    @property
    def backends_dir(self) -> Path:
        return self.dir / "backends"

    @property
    def revisions_file(self) -> Path:
        """Every revision's life, one JSON event a line (``llmctl.rollout.revisions``)."""
        return self.dir / "revisions.jsonl"

    @property
    def rollout_file(self) -> Path:
        """Kubernetes targets: the rollout in progress that the next plan/up renders."""
        return self.dir / "rollout.json"

    @property
    def routing_file(self) -> Path:
        """Which revisions answer and with what weight; re-read by the gateway within a second."""
        return self.dir / "gateway" / "routing.json"

    def __str__(self) -> str:
        return str(self.dir)


@dataclass(frozen=True)
class TrainingState:
    """The training folder of one blueprint. ``_training`` cannot be a target's name (target names
    are DNS labels), so it never collides with a stack folder. Creating one touches nothing."""

    blueprint: str
    home: Path

    @classmethod
    def of(cls, blueprint: str, home: Path | None = None) -> TrainingState:
        return cls(blueprint, (home or llmctl_home()).expanduser().resolve())

    @property
    def dir(self) -> Path:
        return self.home / self.blueprint / "_training"

    @property
    def history_file(self) -> Path:
        return self.dir / "history.jsonl"

    @property
    def jobs_dir(self) -> Path:
        return self.dir / "jobs"

    def job_file(self, job_id: str, suffix: str) -> Path:
        return self.jobs_dir / f"{job_id}{suffix}"

    @property
    def artifacts_dir(self) -> Path:
        return self.dir / "artifacts"

    @property
    def lock_file(self) -> Path:
        return self.dir / ".lock"


def pulumi_backend_dir(home: Path | None = None) -> Path:
    """Pulumi's ``file://`` backend for every kubernetes target of this home."""
    return (home or llmctl_home()) / "pulumi"


def stacks_with_dev_issuer(target: str | None, home: Path | None = None) -> list[StackState]:
    """The stacks (of ``target``, or of any target) that have a dev issuer: whom ``llmctl token``
    without a blueprint can sign for."""
    root = home or llmctl_home()
    found = sorted(p.parent.parent for p in root.glob(f"*/{target or '*'}/auth/dev-issuer.json"))
    return [StackState(p.parent.name, p.name, root) for p in found]
