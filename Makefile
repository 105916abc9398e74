# stageflow — everything starts from here on a fresh clone with python3 (3.11+), git and make.
#   make run     the whole stack on this machine (Temporal dev server, SMTP sink, worker, API)
#   make test    the whole test suite (pass pytest options with PYTEST_ARGS="-k health -x")

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test bench demo clean-data venv

help:
	@echo "make run         start stageflow locally (API on :8000, Temporal UI on :8233; Ctrl-C stops)"
	@echo "make test        run the test suite (PYTEST_ARGS='...' passes options to pytest)"
	@echo "make bench       run the benchmarks (BENCH_ARGS='...' passes options)"
	@echo "make demo        run the furniture-shop demo (scripts/demo.py)"
	@echo "make clean-data  delete ./data (the local databases, API key and mail)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "stageflow needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1). Use make PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/run.py

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean-data:
	rm -rf data
