# llmctl: two commands do everything on a fresh Debian/Ubuntu x86-64 machine with Python 3.11.
#   make demo   the main job on the local target (creates .venv, installs, runs; stack stays up)
#   make test   lint and the whole test suite (creates .venv, installs, runs)
# Installs are stamped, so a second run only re-installs when pyproject.toml changed.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch from PyPI without a pin is a multi-GB CUDA build; the extras pin the CPU build (see pyproject).
PIP_FLAGS ?= --disable-pip-version-check --progress-bar off
DEMO_BLUEPRINT ?= blueprints/hr-policy-assistant.yaml
# llama-cpp-python compiles llama.cpp from source: build only the library the local target uses
# (no multimodal library), with both cores. pip caches the built wheel.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: demo demo-plan down test test-fast test-stack lint format install-dev install-demo clean bench

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "llmctl needs Python >= 3.11 (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) -q --upgrade pip setuptools wheel

$(VENV)/.stamp-dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) -e '.[dev,local,k8s,gates]'
	@touch $@

$(VENV)/.stamp-demo: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(PIP_FLAGS) -e '.[local,gates,k8s]'
	@touch $@

install-dev: $(VENV)/.stamp-dev
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
