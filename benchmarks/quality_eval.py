"""The quality gate's figures on a loaded machine: the evaluation set asked one question at a time
through the gateway's own code, in this process, against a running local stack.

Why beside ``llmctl verify``: on a shared 2-core machine one generation can wait past Triton's
30 s first-token deadline behind other work; the gateway then answers 504 and its breaker answers
503 for a few seconds, and the gate counts those requests as failed. Here the gateway is built
from the stack's own config (same Triton, same index, same grounding mode, same prompt and
decoding) with only the Triton deadlines widened to 180 s and the rate limit lifted, and asked
over real HTTP with dev tokens carrying each question's ``asker_groups``. Scores come from
``llmctl.gates.quality.score``, so the figures are the gate's; ``--update-baseline`` stores them
as ``llmctl verify --update-baseline`` would.

    LLMCTL_HOME=... llmctl up BLUEPRINT -y && llmctl ingest BLUEPRINT
    LLMCTL_HOME=... python benchmarks/quality_eval.py BLUEPRINT [--update-baseline]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from test_gateway_support import ServerThread

    from llmctl.blueprint import load_blueprint
    from llmctl.gates.quality import eval_set_hash, load_eval_set, score, write_baseline
    from llmctl.gateway.app import create_app
    from llmctl.gateway.auth import mint_dev_token
    from llmctl.gateway.config import RateLimitConfig, load_config
    from llmctl.state import StackState

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blueprint", type=Path)
    ap.add_argument("--target", default="local")
    ap.add_argument("--update-baseline", action="store_true")
    args = ap.parse_args()
    bp = load_blueprint(args.blueprint)
    state = StackState.of(bp.name, args.target)
    config = load_config(state.gateway_config)
    audit_dir = Path(tempfile.mkdtemp(prefix="quality-eval-audit-"))
    config = config.with_changes(
        limits=dataclasses.replace(
            config.limits, triton_first_token_timeout_s=180.0, triton_token_timeout_s=180.0
        ),
        rate_limit=RateLimitConfig(requests_per_minute=1e6, burst=1_000_000),
        # its own trail: the stack's gateway keeps writing the stack's
        audit=dataclasses.replace(
            config.audit, path=str(audit_dir / "audit.jsonl"), retention_days=0, records_per_day=0
        ),
    )
    eval_path = (args.blueprint.parent / bp.gates.quality.eval_set).resolve()
    questions = load_eval_set(eval_path)
    responses = []
    t0 = time.perf_counter()
    with ServerThread(create_app(config)) as server, httpx.Client(timeout=600) as client:
        for q in questions:
            groups = list(q.get("asker_groups") or [])
            tok = mint_dev_token(state.dir, user=f"eval-{q['id']}", groups=groups, ttl_s=900)
            r = client.post(
                f"{server.url}/v1/ask",
                json={"question": q["question"]},
                headers={"Authorization": f"Bearer {tok}"},
            )
            body = r.json()
            responses.append(
                {
                    "status": r.status_code,
                    "outcome": body.get("outcome"),
                    "answer": body.get("answer"),
                    "citations": [c.get("doc_id") for c in body.get("citations") or []],
                    "grounding": body.get("grounding"),
                    "error": body.get("error"),
                }
            )
    figures = score(questions, responses)
    print(f"{bp.name}: {len(questions)} questions in {time.perf_counter() - t0:.0f} s")
    for key in (
        "answer_correctness",
        "grounded_rate",
        "generated_grounded_rate",
        "recall_at_k",
        "citation_accuracy",
        "refusal_correctness",
        "answered",
        "errors",
    ):
        print(f"  {key:24} {figures.get(key)}")
    for row in figures["details"]:
        if row.get("kind") != "restricted" and not row.get("answer_match"):
            print(f"  miss {row['id']}: cited {row.get('cited')}, {row.get('error') or ''}")
        if row.get("kind") == "restricted" and not row.get("correct"):
            print(f"  refusal wrong {row['id']}: leaked {row.get('leaked')}")
    if args.update_baseline:
        path = (args.blueprint.parent / bp.gates.quality.baseline).resolve()
        write_baseline(
            path, figures, eval_hash=eval_set_hash(questions), blueprint_hash=config.blueprint_hash
        )
        print(f"baseline written: {path}")
    return 1 if figures.get("errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())
