#!/usr/bin/env bash
# The main job, as an architect, an operator, a data owner, an employee and CI run it. Called by
# `make demo` (all: the plan, then the local stack: up, ingest, ask as two users, verify) and
# `make demo-plan` (the plan only, no processes started) after .venv is installed.
#   tools/demo.sh all|plan|stack [BLUEPRINT]
set -euo pipefail
STAGE=${1:-all}
BP=${2:-blueprints/hr-policy-assistant.yaml}
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# an `llmctl ask --output json` answer as people read it
show() {
  python - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["answer"].strip())
for i, c in enumerate(r["citations"], 1):
    print(f"  [{i}] {c['title']} — {c['heading']}  ({c['path']}, score {c['score']:.2f})")
for q in r.get("quotes") or []:
    print(f"  quote [{q['number']}] \"{q['text']}\"")
g = r.get("grounding")
if g:
    state = "grounded" if g["grounded"] else "withheld, quotes returned" if g["replaced"] else "not grounded"
    print(f"  grounding {state} (score {g['score']:.2f}; unsupported: {', '.join(g['unsupported']) or 'none'})")
print(f"  outcome {r['outcome']} · request {r['request_id']}")
PY
}

plan() {
  say "architect: llmctl check (schema and semantic rules, every example)"
  llmctl check blueprints/*.yaml

  say "architect: llmctl size $BP (the production GPU plan and its cost)"
  llmctl size "$BP"

  say "operator: llmctl build $BP --target prod --dry-run (TensorRT-LLM spec and exact steps)"
  llmctl build "$BP" --target prod --dry-run

  say "operator: llmctl render $BP --target prod (Kubernetes manifests, validated, no cluster)"
  llmctl render "$BP" --target prod --out reports/demo/manifests

  say "operator: llmctl build $BP (the local target's Triton model repository, content-addressed)"
  llmctl build "$BP"
  echo
  echo "manifests: reports/demo/manifests/"
}

stack() {
  say "operator: llmctl up $BP -y (real Triton on CPU + the gateway, on 127.0.0.1)"
  mkdir -p reports/demo
  llmctl up "$BP" -y

  say "data: llmctl ingest $BP (policy corpus, ACLs kept, embedded through Triton)"
  llmctl ingest "$BP"

  Q="What is the salary band for a Vice President (G4)?"
  RESTRICTED=hr/salary-bands-2026   # readable by hr-admins only (its front matter)
  say "employee alice (all-employees) asks: $Q"
  llmctl ask "$BP" "$Q" --as alice --groups all-employees --output json > reports/demo/alice.json
  show reports/demo/alice.json
  say "HR administrator hana (hr-admins) asks the same question"
  llmctl ask "$BP" "$Q" --as hana --groups all-employees,hr-admins --output json > reports/demo/hana.json
  show reports/demo/hana.json
  say "access control: who saw $RESTRICTED?"
  python - "$RESTRICTED" reports/demo/alice.json reports/demo/hana.json <<'PY'
import json, sys
doc, *files = sys.argv[1:]
seen = {f.split("/")[-1][:-5]: doc in {c["doc_id"] for c in json.load(open(f))["citations"]} for f in files}
for user, saw in seen.items():
    print(f"  {user:6} {'cited it' if saw else 'did not get it'}")
if seen != {"alice": False, "hana": True}:
    sys.exit("access control demo: unexpected result (see the answers above)")
PY

  say "CI: llmctl verify $BP (smoke, load, quality and compliance gates)"
  llmctl verify "$BP" --eval-limit 12 --report reports/demo --junit reports/demo/junit.xml
  echo
  echo "report: reports/demo/index.html  (JSON: reports/demo/verify.json, JUnit: reports/demo/junit.xml)"
  echo "the stack is still up: .venv/bin/llmctl status $BP; stop it with make down"
}

case "$STAGE" in
  all) plan; stack ;;
  plan) plan ;;
  stack) stack ;;
  *) echo "usage: tools/demo.sh all|plan|stack [BLUEPRINT]" >&2; exit 2 ;;
esac
