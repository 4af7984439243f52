"""The starter blueprint ``llmctl init`` writes: the smallest useful service, commented."""

from __future__ import annotations

import os
import re
from pathlib import Path

from llmctl.errors import LlmctlError

SCHEMA_URL = "https://llmctl.dev/schemas/blueprint.schema.json"

TEMPLATE = """\
# yaml-language-server: $schema={schema}
# Blueprint for {name}. Check it with: llmctl check {file}
apiVersion: llmctl.dev/v1
kind: Blueprint
metadata:
  name: {name}
  description: Internal question answering over our documents, with citations.
  owner: platform-team
requirements:
  dataResidency: private     # data never leaves our infrastructure
  citations: required        # every answer cites its sources
  audit:
    required: true
    sink: file://audit/audit.jsonl
    retentionDays: 365
  users:
    total: 500
    peakConcurrent: 20
  slo:
    ttftP95Ms: 2000
    latencyP95Ms: 15000
    errorRate: 0.01
model:
  id: meta-llama/Llama-3.1-8B-Instruct
  precision: auto            # llmctl size picks one
  maxInputTokens: 3072
  maxOutputTokens: 512
retrieval:
  sources:
    - name: docs
      path: docs             # folder of Markdown/text, relative to this file
      sensitivity: internal
      acl: [all-employees]
network:
  ingress:
    sources: [10.0.0.0/8]
  egress: deny
  auth:
    mode: oidc
    issuer: https://login.example.internal
    audience: {name}
targets:
  local:
    type: local
    gates:                   # this machine's CPU stand-in model: real gates, looser numbers
      load: {{users: 2, spawnRate: 2, durationS: 20, p95LatencyMs: 60000, p95TtftMs: 30000, maxErrorRate: 0.01}}
"""


def write_starter(name: str, directory: Path, *, force: bool = False) -> Path:
    """Write the starter blueprint and its (empty) docs folder; refuse to overwrite silently."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise LlmctlError(
            f"'{name}' is not a valid service name; use lowercase letters, digits and '-' "
            "(e.g. hr-assistant)"
        )
    if not directory.is_dir():
        raise LlmctlError(f"{directory}: no such folder; create it first or pass --dir")
    path = directory / f"{name}.yaml"
    if path.exists() and not force:
        raise LlmctlError(f"{path} already exists; pass --force to overwrite it")
    text = TEMPLATE.format(schema=SCHEMA_URL, name=name, file=path)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    docs = directory / "docs"
    docs.mkdir(exist_ok=True)
    return path
