"""Grounding overhead per answer on the local stack: quote selection plus the check of the answer.

The gateway measures it itself and returns it in every answer's ``timings.grounding_ms`` (the
time in ``grounding.candidates``/``select_quotes`` before generation plus ``grounding.check`` and
``compose`` after it, embedder calls included; ``llmctl_gateway_grounding_seconds`` on
``/metrics`` is the same figure). This script asks a running local stack's gateway every answerable
question of an evaluation set, one at a time, as each question's asker, and prints p50 / p95 /
max of ``grounding_ms`` beside ``total_ms`` and the grounding outcomes. Goal: p50 <= 50 ms.

    LLMCTL_HOME=... llmctl up BLUEPRINT -y && llmctl ingest BLUEPRINT
    LLMCTL_HOME=... python benchmarks/grounding_overhead.py BLUEPRINT [--repeat 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    from llmctl.blueprint import load_blueprint
    from llmctl.gates.quality import load_eval_set
    from llmctl.gateway.auth import mint_dev_token
    from llmctl.state import StackState

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("blueprint", type=Path)
    ap.add_argument("--target", default="local")
    ap.add_argument("--repeat", type=int, default=1, help="ask the set this many times")
    args = ap.parse_args()
    bp = load_blueprint(args.blueprint)
    state = StackState.of(bp.name, args.target)
    port = int(state.gateway_port_file.read_text().strip())
    url = f"http://127.0.0.1:{port}/v1/ask"
    eval_path = (args.blueprint.parent / bp.gates.quality.eval_set).resolve()
    questions = [q for q in load_eval_set(eval_path) if q.get("kind") != "restricted"]
    grounding_ms: list[float] = []
    total_ms: list[float] = []
    outcomes: dict[str, int] = {}
    with httpx.Client(timeout=180) as client:
        for _ in range(args.repeat):
            for q in questions:
                tok = mint_dev_token(state.dir, user="bench", groups=q["asker_groups"], ttl_s=600)
                r = client.post(
                    url,
                    json={"question": q["question"]},
                    headers={"Authorization": f"Bearer {tok}"},
                )
                body = r.json()
                if r.status_code != 200:
                    print(f"{q['id']}: HTTP {r.status_code}: {body}", file=sys.stderr)
                    continue
                g = body.get("grounding")
                if g is None:  # no source: nothing was generated, nothing checked
                    outcomes["no_source"] = outcomes.get("no_source", 0) + 1
                    continue
                key = "grounded" if g["grounded"] else "replaced" if g["replaced"] else "ungrounded"
                outcomes[key] = outcomes.get(key, 0) + 1
                grounding_ms.append(body["timings"]["grounding_ms"])
                total_ms.append(body["timings"]["total_ms"])
    if not grounding_ms:
        print("no answer was checked", file=sys.stderr)
        return 1
    print(f"blueprint {bp.name}: {len(grounding_ms)} answers checked ({outcomes})")
    for name, values in (("grounding_ms", grounding_ms), ("total_ms", total_ms)):
        print(
            f"  {name:13} p50 {statistics.median(values):8.2f}  p95 {percentile(values, 0.95):8.2f}"
            f"  max {max(values):8.2f}"
        )
    share = statistics.median(grounding_ms) / statistics.median(total_ms)
    print(f"  grounding is {share:.1%} of the median answer's time; goal p50 <= 50 ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
