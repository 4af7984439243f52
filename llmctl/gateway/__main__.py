"""``python -m llmctl.gateway --config PATH --host 127.0.0.1 --port N``: run the gateway.

``--port 0`` lets the kernel pick a free port; ``--ready-file`` then tells the caller which one
(tests, benchmarks). The socket is bound here, before uvicorn starts, so the port in the ready
file is the one already listening.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

from llmctl.errors import LlmctlError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m llmctl.gateway", description=__doc__)
    p.add_argument("--config", required=True, help="gateway config JSON (written by `llmctl up`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind; 0 picks a free one")
    p.add_argument("--ready-file", help="write {host, port, pid} here once listening")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from llmctl.gateway.app import create_app
    from llmctl.gateway.config import load_config
    from llmctl.gateway.server import build_server

    try:
        config = load_config(args.config)
    except LlmctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    level = getattr(logging, config.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = create_app(config)  # fails here on an unreadable question key ring, for one
    except LlmctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    server = build_server(app, config, timeout_graceful_shutdown=5)
    if args.ready_file:
        original_startup = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original_startup(sockets=sockets)
            tmp = Path(args.ready_file + ".tmp")
            tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}))
            os.replace(tmp, args.ready_file)

        server.startup = startup  # type: ignore[method-assign]
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
