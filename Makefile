# The README's two commands: `make run` and `make test`. Everything they need is installed from here.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PORT ?= 8000
export PORT

.PHONY: run test deps deps-dev system-deps-run system-deps-test lint bench clean

# Last, the project itself, editable (pyproject.toml): benches, scripts and `python -m search_spaces` import it
# from any folder.
$(VENV)/.deps: requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps -r requirements-nodeps.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@

# The `automl` client and CLI (client/), editable, so the e2e tests run the entry point a user would; its
# dependencies (requests, PyYAML) are pinned in the requirements files above.
$(VENV)/.deps-dev: $(VENV)/.deps requirements-dev.txt client/pyproject.toml
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e ./client
	touch $@

deps: $(VENV)/.deps
deps-dev: $(VENV)/.deps-dev

# Optional data for `make run` (Fashion-MNIST); the service runs without it.
system-deps-run:
	@bash deploy/install-system-deps.sh run || echo "note: optional Debian packages not installed; Fashion-MNIST jobs will say so"

# Debian packages the test suite needs: Chromium for the browser test, Fashion-MNIST for the data tests.
system-deps-test:
	bash deploy/install-system-deps.sh test

run: deps system-deps-run
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap --demo
	exec $(VENV)/bin/honcho --procfile Procfile start

test: deps-dev system-deps-test
	$(MAKE) lint
	$(PY) -m pytest

lint: deps-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy search_spaces

bench: deps-dev
	$(PY) -m bench.dispatch

clean:
	rm -rf var .pytest_cache
