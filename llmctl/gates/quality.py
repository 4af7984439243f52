"""The quality gate: the evaluation set asked through the gateway, scored, compared with a baseline.

Every question is asked as its own asker (a token with the question's ``asker_groups``), so the
same path a real employee takes decides what is retrieved and cited. Scores:

- recall@k: for answerable questions, an answering document is among the retrieved and cited
  sources (the gateway cites exactly the top-k sources it put in the prompt);
- citation accuracy: for answerable questions, the top-ranked citation is an answering document;
- refusal correctness: for restricted questions, nothing the asker may not read is cited (neither
  the restricted document nor anything else outside the asker's groups);
- answer correctness: for answerable questions, the answer the caller gets contains the
  expected phrase (``expected_answer_contains``); with grounding enforced that answer is either
  the model's text, checked against its quotes, or the verbatim quotes themselves
  (``llmctl.gateway.grounding``);
- grounded rate: of the answers given (outcome ``answered``), the share whose text is backed by
  its quotes: the model's own text passed the check, or it was withheld and the quotes returned.
  ``generated_grounded_rate`` (reported) is the share where the model's own text passed.

The baseline is a small JSON file next to the blueprint; a score that falls by more than
``max_regression`` below it fails the gate, and ``--update-baseline`` writes the current scores.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from llmctl.errors import LlmctlError
from llmctl.gates.results import ERROR, Check, GateResult, ge

METRICS = (
    "recall_at_k",
    "citation_accuracy",
    "refusal_correctness",
    "answer_correctness",
    "grounded_rate",
)
BASELINE_VERSION = 1
PER_QUESTION = ("retrieved", "top_cited", "correct", "answer_match", "grounded")


def load_eval_set(path: str | Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LlmctlError(f"{path}: cannot read the evaluation set: {exc}") from exc
    questions = (doc or {}).get("questions") if isinstance(doc, dict) else None
    if not isinstance(questions, list) or not questions:
        raise LlmctlError(f"{path}: no 'questions' list in the evaluation set")
    return questions


def eval_set_hash(questions: Sequence[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(list(questions), sort_keys=True).encode()).hexdigest()


def select(questions: Sequence[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """At most ``limit`` questions, spread evenly over each kind so a short run keeps both."""
    if not limit or limit >= len(questions):
        return list(questions)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        kinds.setdefault(q.get("kind", "answerable"), []).append(q)
    picked: list[dict[str, Any]] = []
    share = max(1, limit // max(1, len(kinds)))
    for items in kinds.values():
        step = max(1, len(items) // share)
        picked += items[::step][:share]
    return picked[:limit]


def ask_all(
    base_url: str,
    questions: Sequence[dict[str, Any]],
    token_for: Callable[[str, list[str]], str],
    *,
    workers: int = 2,
    timeout_s: float = 180.0,
    on_progress: Callable[[int, int], None] | None = None,
    source: str = "quality",
) -> list[dict[str, Any]]:
    """Ask each question as its asker; return one response record per question, in order."""
    from llmctl.errors import LlmctlError
    from llmctl.gateway.client import GatewayClient

    done = 0
    client = GatewayClient(base_url, timeout=timeout_s, max_connections=max(1, workers))

    def one(q: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        user = f"verify-{source}-{q.get('id')}"
        groups = list(q.get("asker_groups") or [])
        record: dict[str, Any] = {
            "source": source,
            "question_id": q.get("id"),
            "user": user,
            "groups": groups,
            "stream": False,
        }
        t = time.perf_counter()
        try:
            r = client.ask(q["question"], token=token_for(user, groups))
            record["status"] = r.status
            record["request_id"] = r.request_id
            record["outcome"] = r.body.get("outcome")
            record["answer"] = r.body.get("answer")
            record["citations"] = [c.get("doc_id") for c in r.body.get("citations") or []]
            record["grounding"] = r.body.get("grounding")
            record["error"] = r.body.get("error") if not r.ok else None
        except LlmctlError as exc:
            record.update(status=None, error=str(exc), citations=[])
        record["latency_ms"] = round((time.perf_counter() - t) * 1e3, 3)
        done += 1
        if on_progress is not None:
            on_progress(done, len(questions))
        return record

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, questions))
    finally:
        client.close()


def may_read(acl: Sequence[str], groups: Sequence[str]) -> bool:
    return bool(set(acl) & set(groups))


def score(
    questions: Sequence[dict[str, Any]],
    responses: Sequence[dict[str, Any]],
    doc_acls: dict[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The quality figures from questions and the gateway's responses (same order)."""
    acls = doc_acls or {}
    answerable = recall = top1 = contains = 0
    restricted = refusals_ok = errors = 0
    answered = grounded = generated = 0
    details = []
    for q, r in zip(questions, responses, strict=True):
        cited = list(r.get("citations") or [])
        expected = set(q.get("expected_docs") or [])
        row: dict[str, Any] = {"id": q.get("id"), "kind": q.get("kind"), "cited": cited}
        if r.get("status") != 200:
            errors += 1
            row["error"] = r.get("error") or f"HTTP {r.get('status')}"
        g = r.get("grounding")
        if r.get("outcome") == "answered":
            answered += 1
            backed = bool(g) and bool(g.get("grounded") or g.get("replaced"))
            grounded += backed
            generated += bool(g) and bool(g.get("grounded"))
            row.update(grounded=backed, replaced=bool(g and g.get("replaced")))
        if q.get("kind") == "restricted":
            restricted += 1
            forbidden = set(q.get("restricted_docs") or [])
            forbidden |= {
                d for d in cited if d in acls and not may_read(acls[d], q.get("asker_groups") or [])
            }
            leaked = [d for d in cited if d in forbidden]
            ok = r.get("status") == 200 and not leaked
            refusals_ok += ok
            row.update(correct=ok, leaked=leaked)
        else:
            answerable += 1
            hit = bool(expected & set(cited))
            first = bool(cited) and cited[0] in expected
            want = str(q.get("expected_answer_contains") or "")
            has = bool(want) and want.lower() in str(r.get("answer") or "").lower()
            recall += hit
            top1 += first
            contains += has
            row.update(retrieved=hit, top_cited=first, answer_match=has)
        details.append(row)
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {
        "questions": len(details),
        "answerable": answerable,
        "restricted": restricted,
        "errors": errors,
        "recall_at_k": ratio(recall, answerable),
        "citation_accuracy": ratio(top1, answerable),
        "refusal_correctness": ratio(refusals_ok, restricted),
        "answer_correctness": ratio(contains, answerable),
        "answer_match": ratio(contains, answerable),  # its name before grounding was gated
        "answered": answered,
        "grounded_rate": ratio(grounded, answered),
        "generated_grounded_rate": ratio(generated, answered),
        "details": details,
    }


def read_baseline(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LlmctlError(f"{path}: cannot read the quality baseline: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        raise LlmctlError(f"{path}: not a quality baseline (no 'metrics' object)")
    return doc


def write_baseline(
    path: Path, figures: dict[str, Any], *, eval_hash: str, blueprint_hash: str
) -> None:
    doc = {
        "version": BASELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "eval_set_sha256": eval_hash,
        "blueprint_hash": blueprint_hash,
        "questions": figures.get("questions"),
        "metrics": {m: figures.get(m) for m in (*METRICS, "generated_grounded_rate")},
        # per question, so a shorter run (--eval-limit) is compared with the same questions
        "per_question": {
            str(d["id"]): {k: d[k] for k in ("kind", *PER_QUESTION) if k in d}
            for d in figures.get("details") or []
            if d.get("id") is not None
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def baseline_metrics(
    baseline: dict[str, Any], figures: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The baseline's scores over the questions this run asked, and what they cover.

    A short run (``--eval-limit``) is a subset of the evaluation set; comparing its scores with
    the whole set's would call an easy subset an improvement and a hard one a regression. When the
    baseline holds per-question results for every question asked, its scores are recomputed over
    exactly those questions; otherwise the stored totals are used.
    """
    per_q = baseline.get("per_question")
    ids = [str(d.get("id")) for d in figures.get("details") or []]
    if not (isinstance(per_q, dict) and ids and all(i in per_q for i in ids)):
        return dict(baseline.get("metrics") or {}), "the whole baseline run"
    rows = [per_q[i] for i in ids]
    answerable = [r for r in rows if r.get("kind") != "restricted"]
    restricted = [r for r in rows if r.get("kind") == "restricted"]

    def mean(items: list[dict[str, Any]], key: str) -> float | None:
        return round(sum(bool(r.get(key)) for r in items) / len(items), 4) if items else None

    answered = [r for r in rows if "grounded" in r]
    metrics = {
        "recall_at_k": mean(answerable, "retrieved"),
        "citation_accuracy": mean(answerable, "top_cited"),
        "refusal_correctness": mean(restricted, "correct"),
        # a baseline stored before these were gated has no per-question value: not compared
        "answer_correctness": mean(answerable, "answer_match")
        if all("answer_match" in r for r in answerable)
        else None,
        "grounded_rate": mean(answered, "grounded") if answered else None,
    }
    return metrics, f"the baseline's results for the same {len(ids)} questions"


def evaluate(figures: dict[str, Any], gate: Any, baseline: dict[str, Any] | None) -> list[Check]:
    """Absolute minimums from the blueprint, then regression against the baseline per metric."""
    checks = [
        ge("recall_at_k", figures.get("recall_at_k"), gate.min_recall_at_k),
        ge("citation_accuracy", figures.get("citation_accuracy"), gate.min_citation_accuracy),
    ]
    if figures.get("restricted"):
        checks.append(
            ge(
                "refusal_correctness",
                figures.get("refusal_correctness"),
                gate.min_refusal_correctness,
            )
        )
    if figures.get("errors"):
        checks.append(
            Check(
                "requests",
                False,
                f"{figures['errors']} evaluation requests failed",
                figures["errors"],
                0,
            )
        )
    if baseline is None:
        checks.append(
            Check(
                "baseline",
                None,
                "no baseline yet: run `llmctl verify --update-baseline` to store one",
            )
        )
        return checks
    base, _scope = baseline_metrics(baseline, figures)
    figures["baseline_scope"] = _scope
    for m in METRICS:
        now, then = figures.get(m), base.get(m)
        if now is None or then is None:
            continue
        drop = round(float(then) - float(now), 6)
        ok = drop <= gate.max_regression
        word = "within" if ok else "more than"
        checks.append(
            Check(
                f"regression.{m}",
                ok,
                f"{m} {now:.4g} vs baseline {then:.4g}: drop {max(drop, 0):.4g} {word} {gate.max_regression:g}",
                now,
                then,
            )
        )
    return checks


def quality_gate(
    figures: dict[str, Any] | None,
    gate: Any,
    baseline: dict[str, Any] | None,
    error: str | None = None,
) -> GateResult:
    if figures is None:
        return GateResult("quality", ERROR, error or "the evaluation set was not asked")
    result = GateResult.from_checks("quality", evaluate(figures, gate, baseline), figures)
    result.figures["thresholds"] = {
        "min_recall_at_k": gate.min_recall_at_k,
        "min_citation_accuracy": gate.min_citation_accuracy,
        "min_refusal_correctness": gate.min_refusal_correctness,
        "max_regression": gate.max_regression,
    }
    result.figures["baseline"] = (
        baseline_metrics(baseline, figures)[0] if baseline is not None else None
    )
    return result
