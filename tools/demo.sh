#!/usr/bin/env bash
# The main job on the local target, as an operator would run it. Called by `make demo`.
set -euo pipefail
BP=${1:-blueprints/hr-policy-assistant.yaml}
LLMCTL=.venv/bin/llmctl
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "llmctl check $BP (schema and semantic rules)"
$LLMCTL check "$BP"
say "llmctl check blueprints/*.yaml"
$LLMCTL check blueprints/*.yaml
if $LLMCTL --help | grep -q ' size '; then
  say "llmctl size $BP (GPU plan for production)"
  $LLMCTL size "$BP"
fi
