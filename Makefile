# The two commands of the README: `make run` (embedded default) and `make test` (the whole suite
# against real PostgreSQL and Redis). Both do every set-up step a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions with hashes, made from pyproject.toml by `make lock`: the image installs LOCK,
# `make install` DEV_LOCK (LOCK plus the test tools).
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
UV_COMPILE := $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes --quiet
PORT ?= 8000

export PG_URL ?= postgres://postgres@127.0.0.1:5432/buddy
export TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint bench bench-expiry services browser clean lock audit bench-gateway

$(STAMP): pyproject.toml $(DEV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Embedded default: SQLite, no Redis (tasks and periodic work in-process), local provisioner.
# Served by uvicorn on buddy.asgi: the gateway's streamed answers need an ASGI server (runserver
# would gather them whole), and the gateway calls the built-in model server on this same port.
run: install
	DEBUG=true $(BIN)/python manage.py migrate --noinput
	DEBUG=true $(BIN)/python manage.py ensure_dev_superuser
	@echo "Console: http://127.0.0.1:$(PORT)/console/ (sign in as the development user above)"
	DEBUG=true BUDDY_PROVISIONER=local PORT=$(PORT) $(BIN)/uvicorn buddy.asgi:application \
		--host 127.0.0.1 --port $(PORT)

# PostgreSQL and Redis on loopback, started when installed but stopped.
services:
	bash scripts/ensure-services.sh

# Debian's chromium and chromedriver, for the admin's browser test (apt; quick when present).
browser:
	bash scripts/ensure-browser.sh

# The house's checks first (seconds), then the suite.
test: lint services browser
	DATABASE_URL=$(PG_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest $(PYTEST_ARGS)

# Deployments per second the expiry sweep terminates, by batch size (database `<PG db>_bench`).
bench-expiry: install services
	PG_URL=$(PG_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python bench/expiry_sweep.py $(BENCH_ARGS)

# ruff, the import contracts of pyproject.toml (one direction between apps and the kernel), and
# mypy with django-stubs and djangorestframework-stubs.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DEBUG=true DATABASE_URL=sqlite:///:memory: $(BIN)/mypy

# The proxy lookup benchmark (not a test): gunicorn on PostgreSQL `buddy_bench` and Redis db 12,
# load from wrk (Debian's package, installed when missing), beside the plain-view sketch and
# drf-api-key (bench/lookup.py); then the window from a revoke's or a stop's commit to the first
# refusal seen by lookups in other processes (bench/revoke_window.py).
bench: install services
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/lookup.py
	PG_URL=$(PG_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/python bench/revoke_window.py

# After changing a dependency in pyproject.toml: the one command that regenerates both lock files
# (newest versions allowed by pyproject.toml; commit them with the change).
lock: install
	$(UV_COMPILE) -o $(LOCK)
	$(UV_COMPILE) --extra dev -o $(DEV_LOCK)

# Known advisories of the locked versions (a release step, README "Dependencies": pip-audit's
# advisory sources are not reachable from the development machines, so CI cannot run it).
audit: install
	$(BIN)/pip-audit --progress-spinner off --require-hashes -r $(LOCK)
	$(BIN)/pip-audit --progress-spinner off --require-hashes -r $(DEV_LOCK)

# The gateway against a raw-ASGI relay sketch and the mock model server they both call, side by
# side (PostgreSQL `buddy_gw_bench`, Redis db 13 unless BENCH_DATABASE_URL/BENCH_REDIS_URL say
# otherwise). See bench/gateway.py.
bench-gateway: install services
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/python bench/gateway.py

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
