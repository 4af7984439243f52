"""LLM-TRAIN-002: the training job has a wall-clock limit that covers its expected duration.

Without ``timeLimit`` the job gets the partition's default (often unlimited): the scheduler cannot
backfill around it and a hung run burns GPU-hours nobody planned. An expected duration longer
than the limit means the job is killed before it can finish; a limit above the partition's
``maxTime`` is refused at submit.

Passing::

    training:
      resources: {gpusPerNode: 8, timeLimit: "06:00:00", expectedHours: 4}

Failing::

    training:
      resources: {gpusPerNode: 8, expectedHours: 4}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext
from llmctl.blueprint.training import minutes

RULE_ID = "LLM-TRAIN-002"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    tr = ctx.bp.training
    if tr is None:
        return
    rs = tr.resources
    if rs.time_limit is None:
        yield ctx.problem(
            ("training", "resources", "timeLimit"),
            "training.resources.timeLimit is required (sbatch --time): set it a little above "
            'the expected duration, e.g. timeLimit: "02:00:00"',
        )
        return
    limit = minutes(rs.time_limit) or 0.0
    if rs.expected_hours is not None and rs.expected_hours * 60 > limit:
        yield ctx.problem(
            ("training", "resources", "expectedHours"),
            f"expectedHours {rs.expected_hours:g} is longer than timeLimit {rs.time_limit} "
            f"({limit / 60:g} h): the job would be killed first; raise the limit",
        )
    names = [p.name for p in tr.slurm.partitions]
    part = tr.slurm.declared(tr.slurm.partition or (names[0] if names else None))
    cap = minutes(part.max_time) if part is not None else None
    if part is not None and cap is not None and limit > cap:
        yield ctx.problem(
            ("training", "resources", "timeLimit"),
            f"timeLimit {rs.time_limit} exceeds partition {part.name!r} maxTime {part.max_time}; "
            "lower it or pick another partition",
        )
    if rs.expected_hours is None:
        yield ctx.problem(
            ("training", "resources"),
            "no training.resources.expectedHours: the capacity plan has no estimate to compare "
            "the run's measured hours with",
            severity="warning",
        )
