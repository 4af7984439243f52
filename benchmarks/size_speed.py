"""Wall time of `llmctl size BLUEPRINT` (target: under one second), as a user would run it.

    python benchmarks/size_speed.py [BLUEPRINT ...] [--runs N]

Runs the real CLI in a fresh interpreter each time (start-up and imports included; see
cli_timing.py for the environment) and reports the median and the worst run. A benchmark, never a timed test: shared CI machines are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from cli_timing import time_command, user_env

ROOT = Path(__file__).resolve().parents[1]

# Where the time goes, in a fresh interpreter: CLI imports, blueprint loading, the planner.
PHASES = """
import sys, time
t0 = time.perf_counter()
import llmctl.cli.commands
t1 = time.perf_counter()
from llmctl.blueprint import load_blueprint
bp = load_blueprint(sys.argv[1])
t2 = time.perf_counter()
from llmctl.sizing import plan, request_from_blueprint
from llmctl.sizing.growth import with_growth
from llmctl.errors import SizingError
try:
    with_growth(plan(request_from_blueprint(bp)), bp)
except SizingError:
    pass
t3 = time.perf_counter()
print(f"{(t1 - t0) * 1e3:.0f} {(t2 - t1) * 1e3:.0f} {(t3 - t2) * 1e3:.0f}")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blueprints", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    blueprints = args.blueprints or sorted((ROOT / "blueprints").glob("*.yaml"))
    worst_all = 0.0
    for bp in blueprints:
        cmd = [sys.executable, "-m", "llmctl", "size", str(bp), "--output", "json"]
        times, rc = time_command(cmd, args.runs, cwd=ROOT, ok_codes=(0, 1))
        worst_all = max(worst_all, max(times))
        print(
            f"{bp.name:32} exit {rc}  median {statistics.median(times) * 1e3:6.0f} ms  "
            f"worst {max(times) * 1e3:6.0f} ms  ({args.runs} runs)"
        )
        phases = subprocess.run(
            [sys.executable, "-c", PHASES, str(bp)],
            cwd=ROOT,
            env=user_env(),
            capture_output=True,
            text=True,
        ).stdout.split()
        if len(phases) == 3:
            print(
                f"{'':32} cli imports {phases[0]} ms, load_blueprint {phases[1]} ms, "
                f"sizing (cold: data files, search, growth plan) {phases[2]} ms"
            )
    print(f"worst overall {worst_all * 1e3:.0f} ms (target < 1000 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
