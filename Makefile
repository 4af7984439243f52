# llmctl: two commands do everything on a fresh Debian/Ubuntu x86-64 machine with Python 3.11.
#   make demo   the main job on the local target (creates .venv, installs, runs; stack stays up)
#   make test   lint and the whole test suite (creates .venv, installs, runs)
# Installs are stamped, so a second run only re-installs when pyproject.toml or setup.py changed.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch from PyPI without a pin is a multi-GB CUDA build; the extras pin the CPU build (see pyproject).
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off
DEMO_BLUEPRINT ?= blueprints/hr-policy-assistant.yaml
# llama-cpp-python compiles llama.cpp from source: build only the library the local target uses
# (no multimodal library), with both cores, for a portable AVX2 baseline instead of -march=native:
# a native build on a CPU with AMX (Sapphire Rapids) takes ggml's AMX path, which dies with a
# general protection fault on the first chat-template prompt in VMs that do not grant AMX tiles.
# The wheel is built once into .whl/ (pip's own cache ignores CMAKE_ARGS, so it could hand back a
# native build) and installed from there; the wheel test installs the same file.
LLAMA_PIN := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
LLAMA_WHEELS := .whl/llama-cpp-avx2
LLAMA_STAMP = $(LLAMA_WHEELS)/.stamp-$(subst ==,-,$(LLAMA_PIN))-$(shell echo '$(CMAKE_ARGS)' | sha1sum | cut -c1-8)
# Extra flags of yours go in LLAMA_CMAKE_ARGS (appended, so they win); the stamp's name carries a
# hash of the flags, so changing them rebuilds the wheel.
export CMAKE_ARGS := -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF $(LLAMA_CMAKE_ARGS)
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
# appended to the machine's own find-links (where a local torch wheel may live), never replacing them
export PIP_FIND_LINKS := $(strip $(PIP_FIND_LINKS) $(CURDIR)/$(LLAMA_WHEELS))

.PHONY: demo demo-plan down test test-fast test-stack lint format install-dev install-demo clean bench system-deps

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "llmctl needs Python >= 3.11 (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -q --upgrade pip setuptools wheel

# Rebuilt only when the pin changes (the stamp's name carries it), not on every pyproject edit.
$(LLAMA_STAMP): | $(VENV)/bin/python
	rm -rf $(LLAMA_WHEELS)
	$(PIP) wheel $(PIP_FLAGS) --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) '$(LLAMA_PIN)'
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py $(LLAMA_STAMP) | $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) --no-index --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	$(PIP) install $(PIP_FLAGS) -e '.[dev,local,k8s,gates]'
	@touch $@

$(VENV)/.stamp-demo: pyproject.toml setup.py $(LLAMA_STAMP) | $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) --no-index --force-reinstall --no-deps $(LLAMA_WHEELS)/*.whl
	$(PIP) install $(PIP_FLAGS) -e '.[local,gates,k8s]'
	@touch $@

# System packages some tests need, each found by one of its commands and installed only while
# missing, so a second run costs a few `command -v`:
#   promtool (Debian's prometheus) checks and unit-tests the alert rules (tests/test_ops_alerts.py);
#   slurm-wlm + munge (slurmctld, slurmd, munged, sbatch, sacct) are the one-node Slurm that
#   tools/slurm-local.sh starts for `llmctl train` (tests/test_training_slurm.py).
# Installed as root on Debian/Ubuntu; anyone else gets a note, and those tests skip saying why.
SYSTEM_DEPS := promtool:prometheus slurmctld:slurm-wlm slurmd:slurm-wlm sbatch:slurm-wlm sacct:slurm-wlm munged:munge
system-deps:
	@missing=""; for pair in $(SYSTEM_DEPS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || case " $$missing " in *" $${pair#*:} "*) ;; *) missing="$$missing $${pair#*:}";; esac; \
	done; missing="$${missing# }"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	     ! grep -qiE '^ID(_LIKE)?=.*(debian|ubuntu)' /etc/os-release 2>/dev/null; then \
	  echo "note: missing system packages: $$missing (needs root on Debian/Ubuntu: apt-get install $$missing); the alert-rule and Slurm tests will skip"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q --no-install-recommends $$missing >/dev/null || \
	    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	    echo "warning: could not install $$missing; their tests will skip"; \
	fi

install-dev: $(VENV)/.stamp-dev system-deps
install-demo: $(VENV)/.stamp-demo

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Everything, the end-to-end tests against a real local stack (Triton, gateway) included.
test: lint
	$(PY) -m pytest

# While iterating: without the tests that start real processes (marked `stack`), or only those.
test-fast: install-dev
	$(PY) -m pytest -m 'not stack'

test-stack: install-dev
	$(PY) -m pytest -m stack

# The main job: check and plan, then the local stack up, ingest, ask as two users, verify.
# The stack stays up afterwards (`make down` stops it).
demo: install-demo
	@bash tools/demo.sh all $(DEMO_BLUEPRINT)

# The plan only (check, size, engine dry-run, manifests, local build); starts no process.
demo-plan: install-demo
	@bash tools/demo.sh plan $(DEMO_BLUEPRINT)

down:
	@if [ -x $(VENV)/bin/llmctl ]; then $(VENV)/bin/llmctl down $(DEMO_BLUEPRINT); fi

bench: install-dev
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .llmctl
