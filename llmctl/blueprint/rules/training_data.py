"""LLM-TRAIN-003: the training data (and script) the job names exist.

A batch job that starts, waits for GPUs for hours, and then fails on a missing file is the most
expensive typo there is; paths are relative to the blueprint file.

Passing::

    training:
      dataset: corpora/hr-policy-eval.yaml
      resources: {timeLimit: "00:30:00"}

Failing::

    training:
      recipe: script
      dataset: corpora/no-such-eval.yaml
      resources: {timeLimit: "00:30:00"}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-TRAIN-003"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    tr = ctx.bp.training
    if tr is None:
        return
    dataset = ctx.bp.resolve_path(tr.dataset)
    if not dataset.exists():
        yield ctx.problem(
            ("training", "dataset"),
            f"training dataset {dataset} does not exist; paths are relative to the blueprint file",
        )
    if tr.recipe == "script":
        if tr.script is None:
            yield ctx.problem(
                ("training", "recipe"),
                "recipe: script needs training.script, the script the batch job runs",
            )
        elif not ctx.bp.resolve_path(tr.script).is_file():
            yield ctx.problem(
                ("training", "script"),
                f"training script {ctx.bp.resolve_path(tr.script)} does not exist",
            )
    elif tr.script is not None:
        yield ctx.problem(
            ("training", "script"),
            f"training.script is only run with recipe: script (the recipe is {tr.recipe}); "
            "remove it or set recipe: script",
        )
    if tr.recipe == "embedder-contrastive" and not ctx.bp.retrieval.sources:
        yield ctx.problem(
            ("training", "recipe"),
            "the embedder-contrastive recipe tunes on the retrieval sources, and there are none",
        )
