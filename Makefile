# stageflow — everything starts from here on a fresh clone with python3 (3.11+), git and make.
#   make run     the whole stack on this machine (Temporal dev server, SMTP sink, worker, API)
#   make test    the whole test suite (pass pytest options with PYTEST_ARGS="-k health -x")

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite runs in this many processes (pytest-xdist): a test module at a time, and the fault and scale tests all
# in one of them, first (tests/conftest.py).
TEST_PROCESSES ?= 2
BENCH_ARGS ?=
# What `make test-postgres` runs with a fresh PostgreSQL database per test: every test of the app's database but
#   tests/faults/ (all but the cancel race)  minutes of killed processes per scenario, not database work; they run
#                                            there too with `make test-postgres PG_TESTS=tests/faults`
#   tests/security/test_secrets.py, test_log_redaction.py  what reaches logs and workflow histories (CI time)
#   tests/test_run_script.py                 `make run`'s SQLite files in data/, by nature
#   tests/postgres/ (but the next line's)    on PostgreSQL already in `make test`
#   tests/unit, tests/transports, tests/test_compose.py  no database
#   tests/console/test_console_browser.py    the browser's side; the console's routes run here
PG_TESTS ?= tests/engine tests/api tests/documents tests/monitoring tests/sales tests/custom tests/variables \
	tests/communication tests/simulation tests/recovery tests/channels tests/console/test_console_routes.py tests/security \
	--ignore=tests/security/test_secrets.py \
	--ignore=tests/security/test_log_redaction.py tests/test_furniture_shop.py \
	tests/faults/test_fault_cancel_race.py tests/postgres/test_database_choice.py

.DEFAULT_GOAL := help
.PHONY: help run test bench demo clean-data venv test-postgres migration

help:
	@echo "make run         start stageflow locally (API on :8000, Temporal UI on :8233; Ctrl-C stops)"
	@echo "make test        check the layer contracts, run the test suite (PYTEST_ARGS='...' passes options to pytest)"
	@echo "make test-postgres  run PG_TESTS with a fresh PostgreSQL database per test (starts Debian's cluster as root)"
	@echo "make migration m='...'  write an Alembic migration for a change of models/tables.py"
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

# The layer contracts first (pyproject.toml, [tool.importlinter]), then the suite.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

clean-data:
	rm -rf data

# Exit code 3 from `prepare`: PostgreSQL cannot be had here (not root, no apt-get); the reason is printed.
test-postgres: $(STAMP)
	@$(BIN)/python -m tests.postgres_support prepare; status=$$?; \
	if [ $$status -eq 3 ]; then echo "make test-postgres: skipped, see the reason above"; exit 0; fi; \
	[ $$status -eq 0 ] || exit $$status; \
	STAGEFLOW_TEST_DATABASE=postgresql $(BIN)/pytest -n $(TEST_PROCESSES) --dist loadscope --no-loadscope-reorder $(PG_TESTS) $(PYTEST_ARGS)

migration: $(STAMP)
	@test -n "$(m)" || { echo 'usage: make migration m="what changed"'; exit 2; }
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	DATABASE_URL="sqlite:///$$scratch/migration.db" $(BIN)/alembic upgrade head && \
	DATABASE_URL="sqlite:///$$scratch/migration.db" $(BIN)/alembic revision --autogenerate -m "$(m)"
