# kubenet: `make up` prepares and launches the cluster, `make test` runs the tests.
# `make help` lists every target.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INVOKE := $(BIN)/invoke

.DEFAULT_GOAL := help
.PHONY: help deps test-deps venv test bench clean-venv

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the programs kubenet runs (qemu, UEFI firmware, tmux, ssh, vde2) if missing
	@scripts/install-deps

test-deps: ## install what the tests need as well (busybox, cpio, cloud-init, ...) if missing
	@scripts/install-deps --test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/.installed ## create .venv with kubenet, invoke and the test tools

test: test-deps venv ## run the whole test suite, the real-VM tests included
	$(BIN)/pytest

bench: venv ## measure how fast `invoke ls` and `invoke argv` start
	$(BIN)/python bench/cli_latency.py

clean-venv: ## remove .venv (your VMs under state_dir are kept)
	rm -rf $(VENV)
