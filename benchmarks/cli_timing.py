"""Timing a command as a user runs it: a fresh process per run, compiled bytecode, no noise flags.

Shared by ``check_speed.py`` and ``size_speed.py``. The development machines export
``PYTHONDONTWRITEBYTECODE=1``, which makes every run recompile llmctl's modules from source; no
user's or CI's installation works that way (pip compiles site-packages, and an editable checkout
writes ``__pycache__`` on first import), so it is removed from the environment of the timed
commands, and one untimed run warms the page cache and the bytecode.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def user_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_command(
    cmd: Sequence[str], runs: int, *, cwd: Path | None = None, ok_codes: Sequence[int] = (0,)
) -> tuple[list[float], int]:
    """Wall seconds of ``runs`` timed runs after one warm-up run, and the last exit code."""
    env = user_env()
    warm = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if warm.returncode not in ok_codes:
        raise SystemExit(f"{' '.join(cmd)} exited {warm.returncode}: {warm.stderr.strip()}")
    times = []
    rc = warm.returncode
    for _ in range(runs):
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True).returncode
        times.append(time.perf_counter() - start)
    return times, rc
