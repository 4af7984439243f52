"""The Slurm batch script for a blueprint's ``training`` section: the operator's translation of the
data scientist's job spec (partition, GPU count and topology, wall-clock limit, QoS), as a file.

The script is self-contained, so it can be handed over, reviewed and submitted by hand
(``sbatch FILE``) exactly as ``llmctl train submit`` submits it: the recipe's settings travel
inside it as JSON, the artifact goes to ``<output>/job-$SLURM_JOB_ID`` (the job id ties the
artifact to its run record), and Slurm's log to ``llmctl-train-<job id>.out`` in the folder it is
submitted from. Rendering is pure: the same blueprint gives the same bytes.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmctl.errors import LlmctlError

if TYPE_CHECKING:
    from llmctl.blueprint.model import Blueprint
    from llmctl.blueprint.training import Training

LOG_PATTERN = "llmctl-train-%j.out"


def log_name(job_id: str) -> str:
    return LOG_PATTERN.replace("%j", job_id)


def job_name(bp_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", f"llmctl-train-{bp_name}")[:64]


def require(bp: Blueprint) -> Training:
    """The blueprint's training section, or a one-line error saying how to add one."""
    if bp.training is None:
        raise LlmctlError(
            f"{bp.path}: no training section; add `training:` with dataset and "
            "resources.timeLimit (see `llmctl schema` or the README's hand-off section)"
        )
    return bp.training


def base_model(bp: Blueprint) -> str:
    """The base model as a folder when it resolves to one here (offline), else as written."""
    tr = require(bp)
    name = tr.base_model or bp.retrieval.embedding.model
    try:
        from llmctl.local.spec import resolve_embedding_model

        return str(resolve_embedding_model(name, bp.base_dir))
    except Exception:
        return name


def output_root(bp: Blueprint, default: Path) -> Path:
    """Where artifacts go: ``training.output`` (relative to the blueprint) or ``default``."""
    tr = require(bp)
    return bp.resolve_path(tr.output) if tr.output else default


def recipe_config(bp: Blueprint) -> dict[str, Any]:
    """The recipe's settings (``RecipeConfig`` without ``out_dir``, which the job fills in)."""
    tr = require(bp)
    hp = tr.hyperparameters
    return {
        "blueprint": str(bp.path),
        "dataset": str(bp.resolve_path(tr.dataset)),
        "base_model": base_model(bp),
        "epochs": hp.epochs,
        "batch_size": hp.batch_size,
        "learning_rate": hp.learning_rate,
        "held_out_fraction": hp.held_out_fraction,
        "seed": hp.seed,
        "k": bp.retrieval.top_k,
        "threads": hp.threads,
    }


@dataclass(frozen=True)
class Directive:
    option: str
    value: str | None = None

    def line(self) -> str:
        return f"#SBATCH --{self.option}" + ("" if self.value is None else f"={self.value}")


def directives(bp: Blueprint) -> list[Directive]:
    """The ``#SBATCH`` lines, in a fixed order."""
    tr = require(bp)
    rs, sl = tr.resources, tr.slurm
    if rs.time_limit is None:  # LLM-TRAIN-002 stops this in `check`; a direct caller gets it too
        raise LlmctlError(f"{bp.path}: training.resources.timeLimit is required (sbatch --time)")
    out = [Directive("job-name", job_name(bp.name))]
    if sl.partition:
        out.append(Directive("partition", sl.partition))
    out += [
        Directive("nodes", str(rs.nodes)),
        Directive("ntasks-per-node", "1"),
        Directive("cpus-per-task", str(rs.cpus_per_task)),
        Directive("mem", f"{rs.memory_gb}G"),
    ]
    if rs.gpus_per_node:
        kind = f"{rs.gpu_type}:" if rs.gpu_type else ""
        out.append(Directive("gres", f"gpu:{kind}{rs.gpus_per_node}"))
    out.append(Directive("time", rs.time_limit))
    if sl.qos:
        out.append(Directive("qos", sl.qos))
    if sl.account:
        out.append(Directive("account", sl.account))
    if sl.constraint:
        out.append(Directive("constraint", sl.constraint))
    if sl.switches:
        out.append(Directive("switches", f"{sl.switches}@{sl.switches_wait_minutes}"))
    if sl.exclusive:
        out.append(Directive("exclusive"))
    out.append(Directive("output", LOG_PATTERN))
    return out


def render(bp: Blueprint, artifacts: Path, python: str = "python3") -> str:
    """The batch script. ``artifacts`` is the folder that gets ``job-<id>/``; ``python`` is the
    interpreter with llmctl installed on the compute nodes (``$LLMCTL_PYTHON`` overrides it)."""
    tr = require(bp)
    lines = ["#!/bin/bash"]
    lines += [d.line() for d in directives(bp)]
    lines += [
        f"# llmctl training job for blueprint {bp.name} (sha256 {bp.hash[:16]}), recipe {tr.recipe}",
        f"# expected: {_expected(tr)}",
        "set -euo pipefail",
        "export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1",
        f"PY=${{LLMCTL_PYTHON:-{shlex.quote(python)}}}",
        f'OUT={shlex.quote(str(artifacts))}/job-"$SLURM_JOB_ID"',
        'mkdir -p "$(dirname "$OUT")"',
        'echo "llmctl-train: job $SLURM_JOB_ID on $(hostname) from $(date -u +%FT%TZ), artifact $OUT"',
    ]
    if tr.recipe == "script":
        assert tr.script is not None  # LLM-TRAIN-003
        lines += [
            f"export LLMCTL_TRAIN_DATASET={shlex.quote(str(bp.resolve_path(tr.dataset)))}",
            f"export LLMCTL_TRAIN_BASE_MODEL={shlex.quote(base_model(bp))}",
            'TMP_OUT="$(dirname "$OUT")/.job-$SLURM_JOB_ID.partial"',
            'rm -rf "$TMP_OUT" && mkdir -p "$TMP_OUT"',
            "trap 'rm -rf \"$TMP_OUT\"' EXIT",
            'export LLMCTL_TRAIN_OUT="$TMP_OUT"',
            f"bash {shlex.quote(str(bp.resolve_path(tr.script)))}",
            'mv -T "$TMP_OUT" "$OUT"',
        ]
    else:
        config = json.dumps(recipe_config(bp), indent=2, sort_keys=True)
        lines += [
            'RECIPE="$(mktemp)"',
            "trap 'rm -f \"$RECIPE\"' EXIT",
            "cat >\"$RECIPE\" <<'LLMCTL_RECIPE'",
            config,
            "LLMCTL_RECIPE",
            '"$PY" -m llmctl.training.recipe "$RECIPE" --out "$OUT"',
        ]
    lines.append('echo "llmctl-train: done $(date -u +%FT%TZ)"')
    return "\n".join(lines) + "\n"


def _expected(tr: Training) -> str:
    rs = tr.resources
    hours = "unknown" if rs.expected_hours is None else f"{rs.expected_hours:g} h"
    gpu_h = rs.expected_gpu_hours
    return f"{rs.nodes} node(s) x {rs.gpus_per_node} GPU(s), {hours}" + (
        f", {gpu_h:g} GPU-hours" if gpu_h is not None else ""
    )
