"""`llmctl size` end to end: the JSON contract and the exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class Done:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``llmctl size ...`` through the real entry point, in-process (imports paid once)."""
    from llmctl.cli import main

    monkeypatch.delenv("LLMCTL_DEBUG", raising=False)

    def _run(*args: str) -> Done:
        monkeypatch.setattr(sys, "argv", ["llmctl", "size", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return _run


def test_single_configuration_json(run):
    done = run(
        "--model",
        "meta-llama/Llama-3.1-70B-Instruct",
        "--gpu",
        "h100",
        "--precision",
        "fp8",
        "--tp",
        "1",
        "--isl",
        "128",
        "--osl",
        "2048",
        "--kv-fraction",
        "0.95",
        "--output",
        "json",
    )
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    keys = "fits reason kv_cache_tokens max_concurrency throughput_tokens_per_s ttft_ms tpot_ms"
    assert set(keys.split()) | {"latency_ms", "gpu", "precision", "tp"} <= d.keys()
    assert d["fits"] and d["gpu"] == "H100-SXM-80GB"
    assert 600 < d["throughput_tokens_per_s"] < 1300  # the KV-bound collapse (912 measured)


def test_single_configuration_text_and_not_fitting(run):
    done = run("--model", "llama-3.1-70b", "--gpu", "L4", "--precision", "bf16")
    assert done.returncode == 0, done.stderr
    assert "weights need" in done.stdout


def test_unknown_model_is_one_line_and_exit_1(run):
    done = run("--model", "nobody/nothing-here", "--gpu", "h100")
    assert done.returncode == 1
    assert "config.json" in done.stderr and "Traceback" not in done.stderr


def test_blueprint_plan_json_and_plot(run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "plan.png"
    done = run(
        str(ROOT / "blueprints" / "hr-policy-assistant.yaml"),
        "--output",
        "json",
        "--plot",
        str(png),
    )
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert d["gpu"] and d["replicas"] >= 1 and d["monthly_cost_usd"] > 0
    assert png.stat().st_size > 1000


def test_blueprint_whose_slo_no_gpu_meets_exits_1(run, tmp_path):
    text = (ROOT / "blueprints" / "hr-policy-assistant.yaml").read_text()
    text = text.replace("peakConcurrent: 64 ", "peakConcurrent: 50000 ")
    assert "peakConcurrent: 50000" in text
    bp = tmp_path / "impossible.yaml"
    bp.write_text(text)
    for rel in ("corpora", "baselines"):
        src = ROOT / "blueprints" / rel
        if src.exists():
            (tmp_path / rel).symlink_to(src)
    done = run(str(bp))
    assert done.returncode == 1
    assert "no configuration" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_list_gpus_json(run):
    done = run("--list-gpus", "--output", "json", "--price", "H100=2.5")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert len(rows) >= 12 and rows["H100-SXM-80GB"]["price_per_hour"] == 2.5


def test_expert_parallel_nvfp4_configuration_json(run):
    done = run(
        "--model", "deepseek-ai/DeepSeek-R1-0528", "--gpu", "b200", "--precision", "fp4",
        "--tp", "8", "--ep", "8", "--isl", "1024", "--osl", "1024", "--output", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert (d["tp"], d["ep"], d["backend"], d["fits"]) == (8, 8, "pytorch", True)
    assert d["throughput_tokens_per_s"] > 0


def test_unknown_backend_is_one_line_and_exit_1(run):
    done = run("--model", "llama-3.1-8b", "--gpu", "h100", "--backend", "onnx")
    assert done.returncode == 1
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown backend 'onnx'" in lines[0]


def test_blueprint_plan_json_carries_the_growth_plan(run):
    done = run(str(ROOT / "blueprints" / "support-chatbot.yaml"), "--output", "json")
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert [g["name"] for g in d["growth"]] == ["phase-2", "phase-3"]
    assert d["request"]["peak_concurrency"] < 100  # requests in flight, not people online


def test_rps_open_loop_json_fields(run):
    args = ["--model", "meta-llama/Llama-3.3-70B-Instruct", "--gpu", "H100", "--precision", "fp8"]
    args += ["--tp", "2", "--isl", "5000", "--osl", "500"]
    res = run(*args, "--rps", "1", "--output", "json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    for key in ("ttft_ms", "ttft_p95_ms", "tpot_ms", "latency_ms", "latency_p95_ms"):
        assert d[key] > 0
    assert d["rate_per_s"] == 1.0 and d["in_flight"] > 1
    assert d["ttft_p95_ms"] > d["ttft_ms"] and d["latency_p95_ms"] > d["latency_ms"]
    text = run(*args, "--rps", "1")
    assert text.returncode == 0 and "Little's law" in text.stdout
    both = run(*args, "--rps", "1", "--concurrency", "4")
    assert both.returncode == 1 and len(both.stderr.strip().splitlines()) == 1
