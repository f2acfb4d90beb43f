# The two commands a newcomer needs: `make demo` and `make test`. Everything else is for CI and benchmarks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-12)
APPS := ops_platform queues routing qa analytics investigation fixtures
DEMO_ENV := OPS_DEMO=1

.PHONY: install demo demo-reset serve test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

## demo: venv, install, migrate, demo data (triaged), serve on 127.0.0.1:8000 and print the logins
demo: $(STAMP)
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py demo_seed
	$(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:8000

## demo-reset: throw the demo database away and build a fresh one
demo-reset:
	rm -f var/ops_platform.sqlite3
	$(MAKE) demo

## test: venv, install, the whole suite (real PostgreSQL, Redis and celery worker when they are reachable)
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy $(APPS)

## bench: every benchmark and drill in turn, one report: bench/results/REPORT.md and docs/benchmark-report.md
## (over an hour; BENCH_ARGS="--quick --skip dashboard" for a smoke run, "--only e2e" for one)
bench: $(STAMP)
	$(BIN)/python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles test-artifacts .mypy_cache .ruff_cache .pytest_cache
