"""The training section without a cluster: schema and rules, the emitted batch script and
Kubernetes Job, the run history, and one-line errors. The real Slurm is in test_training_slurm.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmctl.blueprint import check_file, load_blueprint
from llmctl.state import TrainingState
from llmctl.training import batch, history, k8s_job

ROOT = Path(__file__).resolve().parents[1]
GPU8 = ROOT / "tests" / "fixtures" / "training" / "gpu8.yaml"
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"


def llmctl(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def test_training_section_is_typed_with_schema_defaults(tmp_path: Path) -> None:
    bp = load_blueprint(HR)
    tr = bp.training
    assert tr is not None and tr.recipe == "embedder-contrastive"
    assert tr.hyperparameters.learning_rate == pytest.approx(3e-5)  # a schema default
    assert tr.resources.time_limit == "00:15:00" and tr.slurm.partitions[0].name == "debug"
    assert load_blueprint(ROOT / "blueprints" / "minimal.yaml").training is None


def test_emitted_gpu_script_asks_for_eight_gpus_on_one_leaf() -> None:
    bp = load_blueprint(GPU8)
    text = batch.render(bp, Path("/shared/artifacts"), "/opt/llmctl/bin/python")
    lines = text.splitlines()
    directives = [line for line in lines if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=llmctl-train-gpu8-training",
        "#SBATCH --partition=h100",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=1G",
        "#SBATCH --gres=gpu:h100:8",
        "#SBATCH --time=04:00:00",
        "#SBATCH --qos=normal",
        "#SBATCH --account=hr-ml",
        "#SBATCH --constraint=ib-leaf-local",
        "#SBATCH --switches=1@30",
        "#SBATCH --output=llmctl-train-%j.out",
    ]
    assert lines[0] == "#!/bin/bash" and "set -euo pipefail" in lines
    # every directive comes before the first command, or sbatch ignores it
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert max(lines.index(d) for d in directives) < first_command
    assert 'OUT=/shared/artifacts/job-"$SLURM_JOB_ID"' in lines
    assert "expected: 1 node(s) x 8 GPU(s), 3 h, 24 GPU-hours" in text
    config = json.loads(text.split("<<'LLMCTL_RECIPE'\n")[1].split("\nLLMCTL_RECIPE")[0])
    assert config["dataset"] == str(GPU8.parent / "docs" / "eval.yaml")
    assert config["k"] == bp.retrieval.top_k
    assert batch.render(bp, Path("/shared/artifacts"), "/opt/llmctl/bin/python") == text


def test_emitted_script_is_valid_bash(tmp_path: Path) -> None:
    out = tmp_path / "job.sbatch"
    r = llmctl("train", str(GPU8), "--emit", "sbatch", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert os.access(out, os.X_OK)
    assert subprocess.run(["bash", "-n", str(out)], capture_output=True).returncode == 0


def test_emitted_job_is_least_privilege_and_valid() -> None:
    from llmctl.k8s.validate import policy_problems, validate

    job = k8s_job.job_manifest(load_blueprint(GPU8))
    report = validate([job], "1.30")
    assert report.ok, report.errors
    assert policy_problems([job]) == []
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["activeDeadlineSeconds"] == 4 * 3600
    assert job["metadata"]["namespace"] == "hr-training"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "llm-engines"
    assert "--out /models/training/gpu8-training/" in c["args"][0]
    assert yaml.safe_load(k8s_job.render_job(load_blueprint(GPU8))) == job


def _variant(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load(GPU8.read_text())
    edit(doc["training"])
    (tmp_path / "docs").mkdir(exist_ok=True)
    for f in (GPU8.parent / "docs").iterdir():
        (tmp_path / "docs" / f.name).write_text(f.read_text())
    path = tmp_path / "bp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("edit", "rule", "words"),
    [
        (lambda t: t["resources"].update(gpusPerNode=16), "LLM-TRAIN-001", "nodes have 8"),
        (lambda t: t["resources"].update(nodes=32), "LLM-TRAIN-001", "has 16"),
        (lambda t: t["slurm"].update(partition="a100"), "LLM-TRAIN-001", "not among"),
        (lambda t: t["resources"].pop("timeLimit"), "LLM-TRAIN-002", "timeLimit is required"),
        (lambda t: t["resources"].update(expectedHours=5), "LLM-TRAIN-002", "killed first"),
        (lambda t: t["resources"].update(timeLimit="3-00:00:00"), "LLM-TRAIN-002", "maxTime"),
        (lambda t: t.update(dataset="docs/missing.yaml"), "LLM-TRAIN-003", "does not exist"),
        (lambda t: t.update(recipe="script"), "LLM-TRAIN-003", "needs training.script"),
        (lambda t: t["resources"].update(timeLimit="4 hours"), "LLM-SCHEMA", "timeLimit"),
        (lambda t: t.update(datset=t.pop("dataset")), "LLM-SCHEMA", "dataset"),
    ],
)
def test_bad_job_specs_get_one_line_errors_with_positions(tmp_path, edit, rule, words) -> None:
    path = _variant(tmp_path, edit)
    r = llmctl("check", str(path))
    assert r.returncode == 1
    lines = [x for x in r.stdout.splitlines() if f": {rule}" in x]
    assert lines, r.stdout + r.stderr
    file, line, col = lines[0].split(":")[:3]
    assert file == str(path) and int(line) > 1 and int(col) >= 1
    assert words in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr


def test_train_refuses_an_invalid_spec_in_one_line(tmp_path: Path) -> None:
    path = _variant(tmp_path, lambda t: t["resources"].update(gpusPerNode=16))
    r = llmctl("train", "submit", str(path), env={"LLMCTL_HOME": str(tmp_path / "home")})
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "LLM-TRAIN-001" in r.stderr, r.stderr
    assert not (tmp_path / "home").exists()


def test_no_training_section_is_one_line(tmp_path: Path) -> None:
    r = llmctl("train", str(ROOT / "blueprints" / "minimal.yaml"), "--emit", "sbatch")
    assert r.returncode == 1 and "no training section" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_submit_without_slurm_says_how_and_writes_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {"PATH": str(bare), "LLMCTL_HOME": str(tmp_path / "home")}
    r = llmctl("train", "submit", str(HR), env=env)
    assert r.returncode == 1
    assert "make system-deps" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "home").exists()


def test_history_records_a_job_once_and_skips_a_torn_line(tmp_path: Path) -> None:
    state = TrainingState.of("bp", tmp_path)
    rec = {"job_id": "7", "state": "COMPLETED", "duration_hours": 0.5, "gpu_hours": 4.0,
           "cpu_hours": 1.0}  # fmt: skip
    assert history.append(state, rec) == rec
    assert history.append(state, {**rec, "state": "FAILED"})["state"] == "COMPLETED"
    with open(state.history_file, "a") as fh:
        fh.write('{"job_id": "8", "sta')  # a writer that died mid-line
    assert [r["job_id"] for r in history.read(state)] == ["7"]
    summary = history.actual_vs_estimate(
        "bp", {"hours": 0.25, "gpu_hours": 2.0, "cpu_hours": None}, tmp_path
    )
    assert summary is not None
    assert summary["ratio"] == {"hours": 2.0, "gpu_hours": 2.0, "cpu_hours": None}
    assert "0.5 h actual vs 0.25 h estimated" in history.hours_lines(summary)[0]
    assert history.actual_vs_estimate("other", {}, tmp_path) is None


def test_every_example_blueprint_still_checks() -> None:
    for path in sorted((ROOT / "blueprints").glob("*.yaml")):
        result = check_file(path)
        assert result.errors == [], [p.text() for p in result.errors]


def test_size_and_verify_report_show_actual_against_estimate(tmp_path: Path, monkeypatch) -> None:
    from llmctl.gates.report import write_reports
    from llmctl.gates.results import VerifyResult

    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path))
    bp = load_blueprint(HR)  # estimate: 0.02 h, 0 GPU-hours, 0.04 CPU-hours
    run = {"job_id": "41", "state": "COMPLETED", "duration_hours": 0.04, "gpu_hours": 0.0,
           "cpu_hours": 0.08}  # fmt: skip
    history.append(TrainingState.of(bp.name), run)
    paths = write_reports(VerifyResult(bp.name, str(HR), "local"), tmp_path / "report")
    hours = json.loads(paths["json"].read_text())["training_hours"]
    assert hours["actual"] == {"hours": 0.04, "gpu_hours": 0.0, "cpu_hours": 0.08}
    assert hours["ratio"] == {"hours": 2.0, "gpu_hours": None, "cpu_hours": 2.0}
    line = "0.04 h actual vs 0.02 h estimated"
    assert line in paths["html"].read_text()
    r = llmctl("size", str(HR), env={"LLMCTL_HOME": str(tmp_path)})
    assert r.returncode == 0 and line in r.stdout, r.stderr
    r = llmctl("size", str(HR), "-o", "json", env={"LLMCTL_HOME": str(tmp_path / "empty")})
    assert "training_hours" not in json.loads(r.stdout)  # nothing ran: nothing claimed
