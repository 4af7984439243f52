"""Child process of the load gate: ``python -m llmctl.gates.load_runner SPEC.json OUT.json``.

Runs Locust as a library (``Environment`` → ``create_local_runner`` → ``start`` → stop after the
duration). It lives in its own process because Locust patches the standard library with gevent
on import. Progress goes to stdout as one JSON object per line; the result goes to OUT.json.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402


def _user_class(ref: str) -> type:
    """``loadtests/file.py:ClassName`` (relative to the folder above ``loadtests/``, see
    ``llmctl.assets``), an absolute ``path.py:ClassName``, or ``module:ClassName``."""
    where, _, name = ref.partition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute():
            from llmctl.assets import asset_dir

            path = asset_dir("loadtests").parent / path
        spec = importlib.util.spec_from_file_location(f"llmctl_loadtest_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def run(spec_doc: dict[str, Any]) -> dict[str, Any]:
    from locust.env import Environment

    from llmctl.gates.load import LoadSpec, figures_from_samples

    spec = LoadSpec.from_dict(spec_doc)
    user_class = _user_class(spec.user_class)
    env = Environment(
        user_classes=[user_class],
        host=spec.host,
        catch_exceptions=True,
        stop_timeout=spec.drain_s,  # let answers in flight at the end finish and count
    )
    env.llmctl_spec = spec  # type: ignore[attr-defined]  # read by the user classes
    env.llmctl_responses = []  # type: ignore[attr-defined]
    samples: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    t0 = time.time()

    def on_request(
        request_type: str, name: str, response_time: float, exception: Any = None, **_: Any
    ) -> None:
        samples.append(
            {
                "kind": request_type,
                "name": name,
                "t": round(time.time() - t0, 3),
                "ms": round(float(response_time), 3),
                "ok": exception is None,
            }
        )
        if exception is not None:
            key = f"{request_type} {name}: {str(exception)[:120]}"
            errors[key] = errors.get(key, 0) + 1

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    _emit(
        {
            "event": "start",
            "users": spec.users,
            "spawn_rate": spec.spawn_rate,
            "duration_s": spec.duration_s,
        }
    )
    runner.start(spec.users, spawn_rate=spec.spawn_rate)
    started = time.monotonic()

    def progress() -> None:
        while True:
            gevent.sleep(spec.progress_interval_s)
            asks = [s for s in samples if s["kind"] == "ASK"]
            ok = sorted(s["ms"] for s in asks if s["ok"])
            _emit(
                {
                    "event": "progress",
                    "elapsed_s": round(time.monotonic() - started, 1),
                    "duration_s": spec.duration_s,
                    "users": runner.user_count,
                    "requests": len(asks),
                    "failures": len(asks) - len(ok),
                    "p95_ms": ok[int(0.95 * (len(ok) - 1))] if ok else None,
                }
            )

    ticker = gevent.spawn(progress)
    gevent.sleep(spec.duration_s)
    runner.stop()  # graceful: each user finishes its current request (up to drain_s), then stops
    measured = time.monotonic() - started
    ticker.kill()
    stats = {
        f"{e.method} {e.name}": {
            "num_requests": e.num_requests,
            "num_failures": e.num_failures,
            "avg": e.avg_response_time,
            "p50": e.get_response_time_percentile(0.5) if e.num_requests else None,
            "p95": e.get_response_time_percentile(0.95) if e.num_requests else None,
            "rps": e.total_rps,
        }
        for e in env.stats.entries.values()
    }
    runner.quit()
    figures = figures_from_samples(samples, measured, spec.users, spec.spawn_rate)
    _emit({"event": "done", **{k: figures[k] for k in ("requests", "failures", "p95_latency_ms")}})
    return {
        "spec": {k: v for k, v in spec_doc.items() if k != "identities"},
        "figures": figures,
        "samples": samples,
        "responses": env.llmctl_responses,  # type: ignore[attr-defined]
        "errors": errors,
        "locust_stats": stats,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m llmctl.gates.load_runner SPEC.json|- OUT.json", file=sys.stderr)
        return 2
    # "-": the spec (bearer tokens included) arrives on stdin, so it never touches the disk
    text = sys.stdin.read() if argv[0] == "-" else Path(argv[0]).read_text()
    result = run(json.loads(text))
    out = Path(argv[1])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
