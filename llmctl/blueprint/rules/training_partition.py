"""LLM-TRAIN-001: the training job's nodes and GPUs fit the partition it asks for.

The operator publishes the cluster's partitions in ``training.slurm.partitions``; a job asking for
more GPUs per node than a node has, or more nodes than the partition has, would pend forever
("Requested node configuration is not available"), so it is caught here instead of in the queue.

Passing::

    training:
      resources: {nodes: 1, gpusPerNode: 8, timeLimit: "04:00:00"}
      slurm:
        partition: h100
        partitions: [{name: h100, nodes: 16, gpusPerNode: 8}]

Failing::

    training:
      resources: {nodes: 1, gpusPerNode: 16, timeLimit: "04:00:00"}
      slurm:
        partition: h100
        partitions: [{name: h100, nodes: 16, gpusPerNode: 8}]
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-TRAIN-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    tr = ctx.bp.training
    if tr is None:
        return
    sl, rs = tr.slurm, tr.resources
    if not sl.partitions:
        return  # nothing published to check against; sbatch --test-only judges at submit
    names = ", ".join(p.name for p in sl.partitions)
    name = sl.partition or sl.partitions[0].name
    part = sl.declared(name)
    if part is None:
        yield ctx.problem(
            ("training", "slurm", "partition"),
            f"partition {name!r} is not among the published partitions ({names}); "
            "pick one of them or add it to training.slurm.partitions",
        )
        return
    if rs.nodes > part.nodes:
        yield ctx.problem(
            ("training", "resources", "nodes"),
            f"{rs.nodes} nodes requested but partition {part.name!r} has {part.nodes}; "
            "ask for fewer nodes or another partition",
        )
    if rs.gpus_per_node > part.gpus_per_node:
        yield ctx.problem(
            ("training", "resources", "gpusPerNode"),
            f"{rs.gpus_per_node} GPUs per node requested but partition {part.name!r} nodes have "
            f"{part.gpus_per_node}; spread the job over more nodes or pick a GPU partition",
        )
    if part.cpus_per_node is not None and rs.cpus_per_task > part.cpus_per_node:
        yield ctx.problem(
            ("training", "resources", "cpusPerTask"),
            f"{rs.cpus_per_task} CPUs per task requested but partition {part.name!r} nodes have "
            f"{part.cpus_per_node}",
        )
