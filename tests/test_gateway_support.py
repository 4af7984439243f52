"""Shared pieces of the gateway tests (no tests here): a small ACL-tagged corpus, a real LanceDB
index built by the retrieval package, a real uvicorn server on 127.0.0.1 port 0, dev tokens.

The gateway is always exercised over real HTTP; only its collaborators vary:
- the retriever is the gateway's own ``IndexRetriever`` over a real ``ChunkIndex``, with either the
  in-process sentence-transformers embedder (same MiniLM weights Triton serves) or, in stack
  tests, the default ``TritonEmbedder``;
- the LLM is the real local Triton (``local_stack`` fixture), except in the ACL property test,
  which uses ``EchoLLM`` on purpose (see its docstring).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.gateway.auth import DevIssuer, ensure_dev_issuer, mint_dev_token
from llmctl.gateway.backends import IndexRetriever
from llmctl.gateway.config import (
    AuditConfig,
    AuthConfig,
    GatewayConfig,
    LimitsConfig,
    RateLimitConfig,
)
from llmctl.gateway.questionkeys import ensure_question_keys
from llmctl.gateway.server import build_server


@dataclass(frozen=True)
class Doc:
    doc_id: str
    title: str
    heading: str
    text: str
    acl: tuple[str, ...]


CORPUS: tuple[Doc, ...] = (
    Doc(
        "hr/parental-leave",
        "Parental leave policy",
        "Entitlement",
        "Employees are entitled to twenty weeks of paid parental leave after the birth or "
        "adoption of a child. Leave must be requested through the HR portal four weeks ahead.",
        ("hr",),
    ),
    Doc(
        "finance/expenses",
        "Expense approval limits",
        "Limits",
        "Expenses above five thousand euros need approval from the chief financial officer. "
        "Receipts are kept for seven years in the finance archive.",
        ("finance",),
    ),
    Doc(
        "it/passwords",
        "Password guidelines",
        "Rotation",
        "Passwords are at least sixteen characters long and are never reused. Multi-factor "
        "authentication is mandatory for every employee account and every VPN login.",
        ("staff",),
    ),
)


def write_corpus(root: Path, docs: Sequence[Doc]) -> Path:
    """Markdown files with the ACL in front matter, as an organisation would keep them."""
    for doc in docs:
        path = root / f"{doc.doc_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        acl = ", ".join(doc.acl)
        path.write_text(
            f"---\nacl: [{acl}]\n---\n# {doc.title}\n\n## {doc.heading}\n\n{doc.text}\n",
            encoding="utf-8",
        )
    return root


def build_index(work: Path, docs: Sequence[Doc], embedder: Any) -> tuple[Path, str]:
    """Ingest ``docs`` with the retrieval package; returns (index dir, index hash)."""
    from llmctl.retrieval.documents import SourceSpec, read_source
    from llmctl.retrieval.ingest import ingest_documents

    source_root = write_corpus(work / "docs", docs)
    read = read_source(SourceSpec(name="policies", root=source_root, sensitivity="confidential"))
    assert not read.errors, read.errors
    index_dir = work / "index"
    report = ingest_documents(read, embedder, index_dir, tokens=128, overlap=16)
    assert report.ok, report
    return index_dir, report.index_hash


def in_process_retriever(index_dir: Path, embedder: Any) -> IndexRetriever:
    from llmctl.retrieval.index import ChunkIndex

    return IndexRetriever(lambda: ChunkIndex.open(index_dir), embedder)


def closed_port() -> int:
    """A loopback port with nothing listening (connect is refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_issuer(state_dir: Path) -> DevIssuer:
    return ensure_dev_issuer(state_dir, audience="llmctl-test", groups_claim="groups")


def token(state_dir: Path, user: str, groups: Sequence[str], ttl_s: int = 600) -> str:
    return mint_dev_token(state_dir, user=user, groups=groups, ttl_s=ttl_s)


def make_config(
    state_dir: Path,
    *,
    triton_url: str = "",
    triton_grpc_url: str = "",
    index_dir: Path | None = None,
    rate: RateLimitConfig | None = None,
    limits: LimitsConfig | None = None,
    include_question_text: bool = False,
    **changes: Any,
) -> GatewayConfig:
    dev = dev_issuer(state_dir)
    return GatewayConfig(
        blueprint_name="gateway-test",
        triton_url=triton_url or f"http://127.0.0.1:{closed_port()}",
        triton_grpc_url=triton_grpc_url or f"127.0.0.1:{closed_port()}",
        index_dir=str(index_dir) if index_dir else None,
        blueprint_hash="1" * 64,
        engine_hash="2" * 64,
        auth=AuthConfig(
            issuer=dev.issuer,
            audience=dev.audience,
            jwks_path=str(dev.jwks_path),
            groups_claim="groups",
        ),
        rate_limit=rate or RateLimitConfig(requests_per_minute=100_000, burst=100_000),
        audit=AuditConfig(
            path=str(state_dir / "audit" / "audit.jsonl"),
            include_question_text=include_question_text,
            question_key_path=str(ensure_question_keys(state_dir)),
        ),
        limits=limits
        or LimitsConfig(
            context_tokens=1024, max_input_tokens=900, max_output_tokens=24, min_score=0.2
        ),
        **changes,
    )


class ServerThread:
    """The gateway app under a real uvicorn server on 127.0.0.1, port chosen by the kernel.

    The server is the production one (``llmctl.gateway.server.build_server``), with the
    connection limits of ``config``, by default the config the app was created with.
    """

    def __init__(self, app: Any, config: GatewayConfig | None = None) -> None:
        self.app = app
        if config is None:
            gateway = getattr(getattr(app, "state", None), "gateway", None)
            config = getattr(gateway, "config", None) or GatewayConfig()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = build_server(
            app, config, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


class EchoLLM:
    """An in-process LLM that streams its whole prompt back as the answer.

    Used only by the ACL property test, deliberately: a real model paraphrases, so a leaked chunk
    might not show in its answer; echoing the prompt makes everything the model was given visible
    in the response, which is exactly what the property must rule out. Generation quality is not
    under test there; the real Triton path is covered in test_gateway_http.py.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.prompts: list[str] = []

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop_words: Sequence[str] = (),
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        self.calls += 1
        self.prompts.append(prompt)
        for i in range(0, len(prompt), 64):
            yield prompt[i : i + 64]

    async def ready(self) -> tuple[bool, str]:
        return True, ""

    async def aclose(self) -> None:
        return None


#: One retrieved chunk readable by group "hr": what the fake retrievers of the HTTP tests return.
LEAVE_HIT: dict[str, Any] = {
    "doc_id": "hr/leave",
    "chunk_id": "hr/leave#0",
    "title": "Parental leave",
    "heading": "Entitlement",
    "path": "hr/leave.md",
    "text": "Employees get twenty weeks of paid parental leave.",
    "score": 0.9,
    "chunk_hash": "h1",
    "acl": ("hr",),
}


def audit_record(i: int, when: str = "") -> Any:
    """An audit record ``r<i>`` of subject ``u<i>``, timed ``when`` (default: now)."""
    from datetime import UTC, datetime

    from llmctl.gateway.audit import AuditRecord

    return AuditRecord(
        request_id=f"r{i}",
        time=when or datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        endpoint="ask",
        outcome="answered",
        status=200,
        subject=f"u{i}",
    )


def chattr_works() -> bool:
    """Whether ``chattr +i`` can make a file immutable here (root, and a filesystem with inode
    flags): the real "audit sink unwritable" fault. Probed once on a scratch file."""
    import os
    import shutil
    import subprocess
    import tempfile

    if os.geteuid() != 0 or shutil.which("chattr") is None:
        return False
    with tempfile.NamedTemporaryFile() as probe:
        ok = subprocess.run(["chattr", "+i", probe.name], capture_output=True).returncode == 0
        subprocess.run(["chattr", "-i", probe.name], capture_output=True)
    return ok
