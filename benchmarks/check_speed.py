"""Wall time of `llmctl check blueprints/hr-policy-assistant.yaml` as a user runs it.

Goal (issue 2): 0.3 s or less on a 2-core machine. Prints the median and best of N runs of the
console script in a fresh process each time (interpreter start-up included, as a user sees it).

    .venv/bin/python benchmarks/check_speed.py [--runs 15] [BLUEPRINT]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "blueprint", nargs="?", default=str(ROOT / "blueprints" / "hr-policy-assistant.yaml")
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "llmctl", "check", args.blueprint]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache and .pyc files
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    py = [sys.executable, "-c", "pass"]
    base = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(py, check=True)
        base.append(time.perf_counter() - start)
    print(
        f"llmctl check {Path(args.blueprint).name}: median {statistics.median(times):.3f} s, "
        f"best {min(times):.3f} s over {args.runs} runs (python start-up alone: "
        f"{statistics.median(base):.3f} s); goal <= 0.300 s"
    )


if __name__ == "__main__":
    main()
