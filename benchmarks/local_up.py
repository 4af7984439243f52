"""``up`` from cold to ready: nothing built, nothing running, until the smoke test has passed.

Also the warm-cache case (models already rendered, Triton not running) and the no-op second ``up``.
Goal: cold up <= 20 s.

    PYTHONPATH=. python benchmarks/local_up.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from local_common import bench_spec, common_args

from llmctl.targets.local import LocalTarget


def main() -> None:
    args = common_args(argparse.ArgumentParser(description=__doc__)).parse_args()
    spec = bench_spec(args.threads, args.gguf)
    with tempfile.TemporaryDirectory(prefix="llmctl-bench-up-") as tmp:
        home, cache = Path(tmp) / "home", Path(tmp) / "cache"
        steps: list[tuple[float, str]] = []
        t0 = time.perf_counter()

        def record(message: str) -> None:
            steps.append((time.perf_counter() - t0, message))

        target = LocalTarget(spec, home=home, cache=cache)
        try:
            cold = target.apply(on_progress=record)
            cold_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            noop = target.apply()
            noop_s = time.perf_counter() - t1
        finally:
            target.destroy()
        t2 = time.perf_counter()
        target = LocalTarget(spec, home=home, cache=cache)
        try:
            target.apply()
            warm_s = time.perf_counter() - t2
        finally:
            target.destroy()
    for at, message in steps:
        print(f"  {at:6.2f} s  {message}")
    print(f"cold up (empty cache, nothing running) to smoke-tested: {cold_s:.1f} s (goal <= 20 s)")
    print(f"up with a warm build cache: {warm_s:.1f} s")
    print(f"second up, nothing changed: {noop_s:.2f} s (changed={noop.changed})")
    assert cold.changed and not noop.changed


if __name__ == "__main__":
    main()
