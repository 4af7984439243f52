#!/usr/bin/env bash
# The main job on the local target, as an architect, an operator and CI would run it.
# Called by `make demo` after it installed .venv. Leaves the stack running; stop it with
#   .venv/bin/llmctl down blueprints/hr-policy-assistant.yaml
set -euo pipefail
BP=${1:-blueprints/hr-policy-assistant.yaml}
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "architect: llmctl check (schema and semantic rules, every example)"
llmctl check blueprints/*.yaml

say "architect: llmctl size $BP (the production GPU plan and its cost)"
llmctl size "$BP"

say "operator: llmctl build $BP (local model repository, content-addressed)"
llmctl build "$BP"

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
