#!/usr/bin/env bash
# The main job, as an architect, an operator and CI run it. Called by `make demo` (plan) and
# `make demo-stack` (the local stack: up, ingest, ask, verify) after .venv is installed.
#   tools/demo.sh plan|stack [BLUEPRINT]
set -euo pipefail
STAGE=${1:-plan}
BP=${2:-blueprints/hr-policy-assistant.yaml}
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$STAGE" = plan ]; then
  say "architect: llmctl check (schema and semantic rules, every example)"
  llmctl check blueprints/*.yaml

  say "architect: llmctl size $BP (the production GPU plan and its cost)"
  llmctl size "$BP"

  say "operator: llmctl build $BP --target prod --dry-run (TensorRT-LLM spec and exact steps)"
  llmctl build "$BP" --target prod --dry-run

  say "operator: llmctl render $BP --target prod (Kubernetes manifests, validated, no cluster)"
  llmctl render "$BP" --target prod -o reports/demo/manifests

  say "operator: llmctl build $BP (the local target's Triton model repository, content-addressed)"
  llmctl build "$BP"
  echo
  echo "manifests: reports/demo/manifests/   next: make demo-stack (the local stack, see README)"
  exit 0
fi

say "operator: llmctl up $BP -y (real Triton on CPU + the gateway, on 127.0.0.1)"
llmctl up "$BP" -y

say "data: llmctl ingest $BP (policy corpus, ACLs kept, embedded through Triton)"
llmctl ingest "$BP"

Q="What is the salary band for a Vice President (G4)?"
say "employee alice (all-employees) asks: $Q"
llmctl ask "$BP" "$Q" --as alice --groups all-employees
say "HR administrator hana (hr-admins) asks the same question"
llmctl ask "$BP" "$Q" --as hana --groups all-employees,hr-admins

say "CI: llmctl verify $BP (smoke, load, quality and compliance gates)"
llmctl verify "$BP" --eval-limit 12 --report reports/demo --junit reports/demo/junit.xml
echo
echo "report: reports/demo/index.html   (stop the stack: .venv/bin/llmctl down $BP)"
