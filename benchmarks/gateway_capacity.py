"""The gateway's sustainable requests/s on the local stack, at the blueprint's error-rate threshold.

Steps the number of simulated employees up (1, 2, 4, ...) with the same Locust profile ``llmctl
verify`` runs (``loadtests/gateway_user.py``, streaming, evaluation-set questions) until the error
rate exceeds ``maxErrorRate`` or p95 latency exceeds ``p95LatencyMs`` of the target's load gate;
the sustainable figure is the throughput of the last step within both. Prints the profile of every
step and the figure (``--json`` for a machine-readable line).

Needs a running stack with the gateway and an index (``llmctl up`` + ``llmctl ingest``), or
``--start`` to start the blueprint's own stack in a private LLMCTL_HOME and ingest into it.

    python benchmarks/gateway_capacity.py blueprints/hr-policy-assistant.yaml --step-s 30 --max-users 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmctl.blueprint import load_blueprint  # noqa: E402
from llmctl.gates import load  # noqa: E402
from llmctl.gates.verify import Stack, identities_and_questions  # noqa: E402


@contextlib.contextmanager
def stack_for(bp: object, target: str, start: bool) -> Iterator[Stack]:
    if not start:
        yield Stack(bp, target)
        return
    from llmctl.retrieval.embedders import TritonEmbedder
    from llmctl.retrieval.ingest import ingest
    from llmctl.targets import target_for

    with tempfile.TemporaryDirectory(prefix="llmctl-capacity-") as tmp:
        os.environ["LLMCTL_HOME"] = str(Path(tmp) / "home")
        t = target_for(bp, target)
        try:
            t.apply()
            emb = TritonEmbedder(t.endpoints()["triton_grpc"])
            try:
                ingest(bp, emb, t.state.index_dir)
            finally:
                emb.close()
            yield Stack(bp, target)
        finally:
            t.destroy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("blueprint", type=Path)
    ap.add_argument("--target", default="local")
    ap.add_argument("--step-s", type=float, default=30.0, help="seconds per user count")
    ap.add_argument("--max-users", type=int, default=32)
    ap.add_argument(
        "--wait",
        type=float,
        nargs=2,
        default=(1.0, 3.0),
        metavar=("MIN", "MAX"),
        help="think time per user, seconds",
    )
    ap.add_argument(
        "--start",
        action="store_true",
        help="start the blueprint's stack here (private LLMCTL_HOME)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bp = load_blueprint(args.blueprint)
    gate = bp.gates_for(args.target).load
    steps = []
    with stack_for(bp, args.target, args.start) as stack:
        users = 1
        while users <= args.max_users:
            identities, questions = identities_and_questions(
                bp, args.target, users, stack.token_for
            )
            spec = load.LoadSpec(
                host=stack.gateway_url,
                users=users,
                spawn_rate=float(users),
                duration_s=args.step_s,
                identities=identities,
                questions=questions,
                wait_min_s=args.wait[0],
                wait_max_s=args.wait[1],
            )
            f = load.run_profile(spec)["figures"]
            ok = (
                (f["error_rate"] or 0.0) <= gate.max_error_rate
                and (f["p95_latency_ms"] or 0.0) <= gate.p95_latency_ms
                and f["requests"] > 0
            )
            steps.append(
                {
                    "users": users,
                    "ok": ok,
                    **{
                        k: f[k]
                        for k in (
                            "requests",
                            "failures",
                            "error_rate",
                            "throughput_rps",
                            "p50_latency_ms",
                            "p95_latency_ms",
                            "p95_ttft_ms",
                            "mean_output_tps",
                        )
                    },
                }
            )
            s = steps[-1]
            print(
                f"users {users:3d}: {s['requests']:4d} req, error rate {s['error_rate'] or 0:.3f}, "
                f"{s['throughput_rps'] or 0:.3f} req/s, p50 {(s['p50_latency_ms'] or 0) / 1e3:.2f} s, "
                f"p95 {(s['p95_latency_ms'] or 0) / 1e3:.2f} s, TTFT p95 {(s['p95_ttft_ms'] or 0) / 1e3:.2f} s "
                f"{'ok' if ok else 'OVER THRESHOLD'}",
                flush=True,
            )
            if not ok:
                break
            users *= 2
    good = [s for s in steps if s["ok"]]
    best = max(good, key=lambda s: s["throughput_rps"] or 0) if good else None
    summary = {
        "blueprint": bp.name,
        "target": args.target,
        "thresholds": {
            "max_error_rate": gate.max_error_rate,
            "p95_latency_ms": gate.p95_latency_ms,
        },
        "step_s": args.step_s,
        "think_time_s": list(args.wait),
        "cpus": os.cpu_count(),
        "sustainable_rps": best["throughput_rps"] if best else 0.0,
        "at_users": best["users"] if best else 0,
        "steps": steps,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"sustainable: {summary['sustainable_rps']:.3f} req/s at {summary['at_users']} users "
            f"(error rate <= {gate.max_error_rate}, p95 <= {gate.p95_latency_ms / 1e3:g} s; {args.step_s:g} s steps)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
