"""Rollouts on the real local stack: Triton with two versions of the LLM, the gateway routing by
weight from its routing file, users' traffic measured per revision, promotion, automatic
rollback of a canary whose model errors, and retiring a revision into a verified archive.

Traffic is real HTTP from many subjects. Most of it asks about nothing the index holds, so it
is answered without the LLM (the routing decision is made for every request all the same) and a
step gathers hundreds of requests in seconds on two cores; the rollout's quality sample asks
real questions of each arm.
"""

from __future__ import annotations

import itertools
import random
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from blueprint_paths import absolute_paths

from llmctl.blueprint import load_blueprint
from llmctl.gateway.audit import read_records
from llmctl.gateway.auth import mint_dev_token
from llmctl.rollout import archive, canary
from llmctl.rollout.revisions import History, record_up
from llmctl.rollout.versions import served_versions

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parent.parent
HR = ROOT / "blueprints" / "hr-policy-assistant.yaml"
OFF_TOPIC = "zxqv blorf quantum pelican tariffs"


def write_bp(tmp: Path, name: str, **local: int) -> Path:
    doc = absolute_paths(yaml.safe_load(HR.read_text()), HR.parent)
    doc["metadata"]["name"] = "rollout-test"
    doc["model"]["local"].update(local)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Traffic:
    """2,000 users asking off-topic questions in turn from a few threads until stopped, so the
    share of requests each revision answers is the share of subjects the routing gives it."""

    def __init__(self, url: str, state: Path, threads: int = 3, users: int = 2000) -> None:
        self.users = users
        self.url, self.state = url, state
        self.stop = threading.Event()
        self.revisions: list[str | None] = []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, seed: int) -> None:
        tokens = [
            mint_dev_token(self.state, user=f"user-{i}", groups=["all-employees"])
            for i in range(seed, self.users, len(self.threads))
        ]
        random.Random(seed).shuffle(tokens)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                r = client.post(
                    "/v1/ask",
                    json={"question": OFF_TOPIC},
                    headers={"Authorization": f"Bearer {tokens[n % len(tokens)]}"},
                )
                self.revisions.append(r.json().get("revision"))

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


@pytest.fixture(scope="module")
def stack(stack_dirs, tmp_path_factory):
    from llmctl.gateway.component import gateway_factory
    from llmctl.local.spec import local_spec_from_blueprint
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.ingest import ingest
    from llmctl.targets.local import LocalTarget

    tmp = tmp_path_factory.mktemp("rollout")
    bp = load_blueprint(write_bp(tmp, "v1"))
    spec = local_spec_from_blueprint(bp).with_changes(startup_timeout_s=600.0, watchdog=False)
    target = LocalTarget(
        spec, home=stack_dirs.home, cache=stack_dirs.cache, extra_components=(gateway_factory(bp),)
    )
    try:
        target.apply()
        embedder = TritonEmbedder(target.endpoints()["triton_grpc"])
        try:
            assert ingest(bp, embedder, target.state_dir / "index").ok
        finally:
            embedder.close()
        first = record_up(target.state, bp)
        assert first is not None and first.state == "active"
        yield tmp, target, first
    finally:
        target.destroy()


def test_a_changed_revision_rolls_out_by_steps_and_is_promoted(stack) -> None:
    tmp, target, first = stack
    # a new model build (its context) and a new output budget: a second Triton version
    bp2 = load_blueprint(write_bp(tmp, "v2", contextTokens=1536, maxOutputTokens=64))
    from llmctl.gates.stack import Stack

    url = Stack(bp2, "local").gateway_url
    with Traffic(url, target.state_dir):
        # At 10% a 6 s step sees about 20-30 canary requests on two busy cores (a fresh-clone
        # run once got 18 of 227); the evidence floor stays well below that so the test checks
        # the stepping and promotion, not this machine's throughput.
        report = canary.run_rollout(
            bp2, steps=(10, 50, 100), step_duration_s=6.0, quality_sample=0, min_requests=8
        )
    assert report.outcome == "promoted", (report.reason, report.to_dict()["steps"])
    for step in report.steps:
        total = step.stable.requests + step.canary.requests
        assert total >= 200, step.to_dict()
        assert abs(step.observed_share - step.weight) <= 5, step.to_dict()
    history = History(target.state.revisions_file).revisions()
    assert history[report.canary].state == "active" and history[first.id].state == "retired"
    assert history[report.canary].llm_version == "2"
    assert served_versions(target.state.models_dir) == [1, 2]
    # every audit record names the revision that answered, and only the two revisions exist
    named = {r.get("revision") for r in read_records(target.state.audit_file) if not r.get("stage")}
    assert None not in named and named <= {first.id, report.canary}


def test_a_canary_whose_model_errors_is_rolled_back(stack, monkeypatch, tmp_path) -> None:
    tmp, target, _ = stack
    # a bad build of the model: its code fails every generation (the templates are the build's
    # input, so this is a new model version, as a broken release would be)
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "engines" / "local", templates)
    code = templates / "tensorrt_llm" / "model.py"
    code.write_text(
        code.read_text().replace(
            "        kwargs = self._sampling(request)\n",
            '        raise RuntimeError("this build is broken")\n',
        )
    )
    monkeypatch.setenv("LLMCTL_LOCAL_TEMPLATES", str(templates))
    bp = load_blueprint(tmp / "v2.yaml")
    from llmctl.gates.stack import Stack

    url = Stack(bp, "local").gateway_url
    stable = History(target.state.revisions_file).active()
    with Traffic(url, target.state_dir):
        report = canary.run_rollout(
            bp, steps=(20, 100), step_duration_s=4.0, quality_sample=2, min_requests=10
        )
    assert report.outcome == "rolled-back", (report.reason, report.to_dict()["steps"])
    assert "quality sample failed" in report.reason
    history = History(target.state.revisions_file).revisions()
    assert history[report.canary].state == "rolled-back"
    assert history[stable.id].state == "active"
    assert served_versions(target.state.models_dir) == [1, 2]  # the broken version 3 is gone
    time.sleep(1.5)  # the gateway re-reads the routing within a second
    with Traffic(url, target.state_dir) as traffic:
        time.sleep(3)
    assert traffic.revisions and set(traffic.revisions) == {stable.id}


def test_retire_archives_and_removes_the_version(stack, tmp_path) -> None:
    tmp, target, first = stack
    bp = load_blueprint(tmp / "v2.yaml")
    result = archive.retire(bp, "local", first.id, str(tmp_path / "archive"))
    manifest = archive.verify_archive(tmp_path / "archive")
    paths = {f["path"] for f in manifest["files"]}
    assert "config/revision.json" in paths and "model/build-manifest.json" in paths
    assert any(p.startswith("index/") for p in paths)
    assert result.unloaded_version == "1"
    assert served_versions(target.state.models_dir) == [2]
    assert History(target.state.revisions_file).revisions()[first.id].archive
    # the archive serves the revision again (as a new version), ready for `llmctl rollback`
    restored = archive.restore_archive(bp, "local", str(tmp_path / "archive"))
    assert restored.id == first.id and restored.state == "retired"
    assert served_versions(target.state.models_dir) == [2, int(restored.llm_version)]
    # a damaged archive does not verify
    (tmp_path / "archive" / "config" / "revision.json").write_text("{}")
    with pytest.raises(Exception, match="sha256 differs"):
        archive.verify_archive(tmp_path / "archive")


def test_an_experiment_reports_both_arms_and_promotes_nothing(stack) -> None:
    """Seed 001's A/B test on response length: the same model, a shorter output budget."""
    tmp, target, _ = stack
    bp = load_blueprint(write_bp(tmp, "short", contextTokens=1536, maxOutputTokens=16))
    from llmctl.gates.stack import Stack
    from llmctl.gateway.routing import read_routing

    stable = History(target.state.revisions_file).active()
    url = Stack(bp, "local").gateway_url
    with Traffic(url, target.state_dir):
        report = canary.run_experiment(bp, split=50, duration_s=4.0, quality_sample=2)
    [step] = report.steps
    assert report.outcome == "experiment" and 35 <= step.observed_share <= 65
    b = step.canary.to_dict()
    assert step.canary.answered >= 1 and b["mean_completion_tokens"] <= 16
    assert History(target.state.revisions_file).active().id == stable.id
    routing = read_routing(target.state.routing_file)
    assert routing is not None and [a.revision for a in routing.arms] == [stable.id]
