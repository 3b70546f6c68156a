# The two commands: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
# The settings are production-safe by default; the demo, the tests and the benches run on this
# machine, in the development mode (debug pages, development secret key, localhost, plain HTTP).
export DJANGO_DEV_MODE ?= 1

.PHONY: setup demo test lint bench browsers stop-db

# --compile-bytecode: the installed packages' bytecode is written once, here. Without it a process
# compiles every module it imports each time it starts wherever Python may not write bytecode
# (PYTHONDONTWRITEBYTECODE, set on these machines and in many container images): measured, django.setup()
# and the chain's modules took 3.8-4.5 s against 1.5-2.0 s precompiled (about 15 s once, at install).
setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --compile-bytecode --quiet

## The demo on the embedded PostgreSQL: ingest, triage, report, serve the inbox on :8000.
demo: setup
	$(RUN) python manage.py demo

## The whole test suite against the embedded PostgreSQL (plus the local Redis for the RQ test),
## after the lint, format, type and import-contract checks.
test: setup browsers lint
	$(RUN) pytest

## ruff (lint and format), mypy, and the import-linter contracts (layers, no cycles, no concrete providers).
lint: setup
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

## Debian's Chromium for the browser tests (Playwright drives it by its executable path).
browsers:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

bench: setup
	$(RUN) --group bench python bench/runner_overhead.py

stop-db: setup
	$(RUN) python manage.py embedded_postgres stop
