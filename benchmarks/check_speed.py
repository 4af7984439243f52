"""Wall time of `llmctl check blueprints/hr-policy-assistant.yaml` as a user runs it.

Goal (issue 2): 0.3 s or less on a 2-core machine. Prints the median and best of N runs of the
console script in a fresh process each time (interpreter start-up included, as a user sees it;
see cli_timing.py for the environment).

    .venv/bin/python benchmarks/check_speed.py [--runs 15] [BLUEPRINT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from cli_timing import time_command

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "blueprint", nargs="?", default=str(ROOT / "blueprints" / "hr-policy-assistant.yaml")
    )
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    llmctl = Path(sys.executable).with_name("llmctl")
    cmd = [str(llmctl), "check", args.blueprint]
    times, _ = time_command(cmd, args.runs)
    base, _ = time_command([sys.executable, "-c", "pass"], 5)
    print(
        f"llmctl check {Path(args.blueprint).name}: median {statistics.median(times):.3f} s, "
        f"best {min(times):.3f} s, worst {max(times):.3f} s over {args.runs} runs "
        f"(python start-up alone: {statistics.median(base):.3f} s); goal <= 0.300 s"
    )


if __name__ == "__main__":
    main()
