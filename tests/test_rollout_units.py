"""Revisions, routing and the rollout's judgement, without a stack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmctl.errors import LlmctlError
from llmctl.gateway.routing import Arm, Router, Routing, choose, parse_routing, write_routing
from llmctl.rollout.canary import Criteria, judge
from llmctl.rollout.observe import ArmStats, Scrape, p95_ms, window
from llmctl.rollout.revisions import History, revision_for

SETTINGS = {"max_output_tokens": 96, "temperature": 0.0}


def rev(n: int = 96, model: str = "m1"):
    return revision_for(
        blueprint_hash="b",
        model_hash=model,
        index_hash="i",
        settings={**SETTINGS, "max_output_tokens": n},
    )


def routing(weight: float, salt: str = "s") -> Routing:
    return parse_routing(
        {
            "salt": salt,
            "arms": [
                {"revision": "old", "role": "stable", "weight": 100 - weight},
                {"revision": "new", "role": "canary", "weight": weight},
            ],
        },
        "test",
    )


def test_a_revision_is_named_by_its_hashes() -> None:
    assert rev().id == rev().id
    assert rev(64).id != rev().id and rev(model="m2").id != rev().id
    assert rev(64).model_hash == rev().model_hash and rev(64).prompt_hash != rev().prompt_hash


def test_weights_split_subjects_and_growing_the_canary_keeps_its_subjects() -> None:
    subjects = [f"user-{i}" for i in range(20000)]
    at = {w: {s for s in subjects if choose(routing(w), s).role == "canary"} for w in (5, 25, 50)}
    for w, on in at.items():
        assert abs(100 * len(on) / len(subjects) - w) < 1.5
    assert at[5] <= at[25] <= at[50]  # sticky: nobody leaves the canary as it grows
    other = {s for s in subjects if choose(routing(25, salt="t"), s).role == "canary"}
    assert other != at[25]  # a new rollout (salt) draws a new sample


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"arms": []}, "no arms"),
        ({"arms": [{"revision": "a", "role": "stable", "weight": 90}]}, "sum to 90"),
        ({"arms": [{"revision": "a", "role": "boss", "weight": 100}]}, "unknown arm role"),
        ({"arms": [{"revision": "a", "role": "stable", "weight": 120}]}, "not in 0..100"),
    ],
)
def test_a_bad_routing_is_refused(doc, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_routing(doc, "test")


def test_the_router_follows_the_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "routing.json"
    router = Router(path, "default", reload_s=0.0)
    assert router.choose("u", "r").revision == "default"
    write_routing(path, Routing((Arm("only", "stable", 100.0, "2"),)))
    assert router.choose("u", "r") == Arm("only", "stable", 100.0, "2")
    path.write_text("{broken")
    assert router.choose("u", "r").revision == "only" and "routing.json" in router.error
    path.unlink()
    assert router.choose("u", "r").revision == "default"


def test_history_folds_events_and_up_retires_the_previous(tmp_path: Path) -> None:
    h = History(tmp_path / "revisions.jsonl")
    a, b = rev(), rev(64)
    h.applied(a)
    h.applied(a)  # unchanged: no new event
    assert len(h.events()) == 1
    h.applied(b)
    revs = h.revisions()
    assert revs[a.id].state == "retired" and revs[b.id].state == "active"
    assert h.get(b.id[:6]).id == b.id
    with pytest.raises(LlmctlError, match="no single revision"):
        h.get("zzz")
    with open(h.path, "a") as fh:
        fh.write('{"torn')  # a crash mid-write
    assert h.revisions()[b.id].state == "active"


def test_p95_of_a_window_interpolates_within_the_bucket() -> None:
    before = {0.1: 0.0, 1.0: 0.0, math.inf: 0.0}
    after = {0.1: 50.0, 1.0: 100.0, math.inf: 100.0}
    assert p95_ms(before, after) == pytest.approx(100 + 900 * 0.9)
    assert p95_ms(after, after) is None


def test_window_counts_errors_per_revision() -> None:
    before = Scrape({("new", "answered"): 10}, {})
    after = Scrape({("new", "answered"): 30, ("new", "unavailable"): 5, ("old", "answered"): 7}, {})
    s = window(before, after, "new")
    assert (s.requests, s.errors, s.answered) == (25, 5, 20)


CRITERIA = Criteria(0.01, 0.02, 1500.0, 1.5, 0.05, 20)


def stats(rev: str, n: int, errors: int = 0, p95: float | None = None, count: int = 0):
    return ArmStats(rev, n, errors, p95, n - errors, 0, count)


def test_judge_passes_a_healthy_canary_and_names_each_failure() -> None:
    assert judge(CRITERIA, stats("a", 200), stats("b", 40)) == []
    assert "not enough evidence" in judge(CRITERIA, stats("a", 200), stats("b", 5))[0]
    assert "error rate" in judge(CRITERIA, stats("a", 200), stats("b", 40, errors=4))[0]
    slow = judge(CRITERIA, stats("a", 200, p95=400, count=50), stats("b", 40, p95=2000, count=20))
    assert "TTFT p95" in slow[0]
    few = judge(CRITERIA, stats("a", 200, p95=400, count=50), stats("b", 40, p95=2000, count=2))
    assert few == []  # two first tokens make no p95
    worse = {"stable": {"answer_correctness": 0.9}, "canary": {"answer_correctness": 0.5}}
    assert "answer_correctness" in judge(CRITERIA, stats("a", 200), stats("b", 40), worse)[0]


def test_routing_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_routing(path, routing(25))
    doc = json.loads(path.read_text())
    assert [a["role"] for a in doc["arms"]] == ["canary", "stable"] and doc["updated_at"] > 0
