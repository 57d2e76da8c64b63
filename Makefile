# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test bench lint format migrate clean

$(VENV)/.base: requirements/base.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/base.txt
	touch $@

$(VENV)/.dev: $(VENV)/.base requirements/dev.txt
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $@

# The checkout's development settings (DEBUG=1, a SECRET_KEY of its own), written once before
# anything reads settings; core/settings.py reads them whenever the file exists, so the
# README's manage.py commands work here as written.
LOCAL_ENV := var/local.env
$(LOCAL_ENV):
	$(PY) -m core.localenv $@

# Starts gunicorn and the qcluster on the embedded SQLite database (DATABASE_URL overrides).
run: $(VENV)/.base $(LOCAL_ENV)
	$(PY) manage.py run_platform --port $(PORT)

# The OpenTelemetry JavaScript SDK for tests/observability/test_exporters.py, from its lockfile.
# Without npm this does nothing, and that test is skipped saying how to run it.
JS_TESTS := tests/js/node_modules/.package-lock.json
$(JS_TESTS): tests/js/package.json tests/js/package-lock.json
	if command -v npm >/dev/null; then npm ci --prefix tests/js --no-audit --no-fund; fi

test: $(VENV)/.dev $(JS_TESTS)
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks need PostgreSQL: DATABASE_URL, or the local server's `platform_bench` database.
bench: $(VENV)/.dev
	$(PY) bench/run.py
	$(PY) bench/ingest.py
	$(PY) bench/otlp_decode.py
	$(PY) bench/metrics.py
	$(PY) bench/webhooks.py
	$(PY) bench/incidents.py
	$(PY) bench/alerting.py
	$(PY) bench/buckets.py
	$(PY) bench/sync.py

# ruff, then mypy (pyproject.toml: strict on core/).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) var tests/js/node_modules
