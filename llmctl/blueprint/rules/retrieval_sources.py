"""LLM-RET-001: retrieval sources are unique, exist, and chunks overlap less than their size.

Passing::

    retrieval:
      sources: [{name: policies, path: corpora/policies}]
      chunking: {tokens: 200, overlap: 32}

Failing::

    retrieval:
      sources: [{name: policies, path: no/such/folder}]
      chunking: {tokens: 200, overlap: 200}
"""

from __future__ import annotations

from collections.abc import Iterator

from llmctl.blueprint.problems import Problem
from llmctl.blueprint.rules.base import RuleContext

RULE_ID = "LLM-RET-001"
SEVERITY = "error"


def check(ctx: RuleContext) -> Iterator[Problem]:
    retrieval = ctx.bp.retrieval
    if retrieval.chunking.overlap >= retrieval.chunking.tokens:
        yield ctx.problem(
            ("retrieval", "chunking", "overlap"),
            f"chunk overlap {retrieval.chunking.overlap} must be smaller than the chunk size "
            f"{retrieval.chunking.tokens}",
        )
    seen: set[str] = set()
    for i, source in enumerate(retrieval.sources):
        if source.name in seen:
            yield ctx.problem(
                ("retrieval", "sources", i, "name"),
                f"source name '{source.name}' is used twice; names must be unique",
            )
        seen.add(source.name)
        folder = ctx.bp.resolve_path(source.path)
        if not folder.is_dir():
            yield ctx.problem(
                ("retrieval", "sources", i, "path"),
                f"source '{source.name}': folder {folder} does not exist; paths are relative to "
                "the blueprint file",
            )
