# Set-up and entry points. Every target installs what it needs on a fresh Debian machine.
SHELL := /bin/bash
VENV := .venv
APT_PACKAGES := runc umoci skopeo busybox-static docker-registry buildah e2fsprogs tini chromium \
	python3 python3-venv procps
# The venv's interpreter: Debian's own Python (built with PGO and LTO, libpython linked in)
# starts and runs lamina's run path in ~15% less CPU than a plain source build of the same
# version (pyenv's). `make PYTHON=...` for another; a venv made of another one is remade.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV_PYTHON := $(shell readlink -f "$$(command -v $(PYTHON))")
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
DEMO_ROOT ?= $(CURDIR)/.demo-root

.PHONY: all system-deps venv test test-fast lint unit integration demo bench clean FORCE

all: test

# apt packages, installed only when one is missing (root only: CI and the demo run as root).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# Which interpreter the venv should be made of (rewritten only when that changes).
$(VENV)/.python: FORCE
	@mkdir -p $(VENV)
	@[ "$$(cat $@ 2>/dev/null)" = "$(VENV_PYTHON)" ] || echo "$(VENV_PYTHON)" > $@

$(VENV)/.installed: pyproject.toml $(VENV)/.python | system-deps
	@if [ -e $(VENV)/bin/python ] && [ "$$(readlink -f $(VENV)/bin/python)" != "$(VENV_PYTHON)" ]; \
	then echo "remaking $(VENV) with $(VENV_PYTHON)"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	echo "$(VENV_PYTHON)" > $(VENV)/.python
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# Bytecode compiled here, not on first use: where PYTHONDONTWRITEBYTECODE is set (CI, some
# shells) every command would otherwise compile each module it imports (~0.2 s per command).
# `lamina` itself is then replaced by a launcher that starts Python without `site` (-S):
# ~1.5 ms of every command, which `lamina run` does without (lamina.cli._script).
venv: $(VENV)/.installed
	$(VENV)/bin/python -m compileall -q src >/dev/null
	$(VENV)/bin/python -m lamina.cli._script $(VENV)/bin/lamina

lint: venv
	ruff check src tests bench
	mypy --strict src
	MYPYPATH=src:tests mypy --strict --explicit-package-bases tests
	lint-imports

test: system-deps venv lint
	pytest -q -p no:cacheprovider

unit: venv
	pytest -q tests/unit

# Day-to-day: unit tests and the quick integration tests (no lint, nothing marked slow).
test-fast: system-deps venv
	pytest -q -p no:cacheprovider -m "not slow"

demo: system-deps venv
	LAMINA_ROOT=$(DEMO_ROOT) bash examples/demo.sh

bench: system-deps venv
	python bench/run.py

clean:
	rm -rf $(VENV) $(DEMO_ROOT) .pytest_cache .mypy_cache .ruff_cache
