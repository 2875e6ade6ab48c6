# The two set-up commands of the README: `make up` runs the product, `make test` the tests.
# Both work on a fresh machine of our kind: the first run installs what is missing and
# says so (the venv, the web studio's npm packages; for `make test` also the apt packages
# and services of scripts/test-deps.sh).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test test-deps lint bench fuzz-nightly ui ui-test wheel lock

# The web studio (control_plane/ui): built into control_plane/ui/dist, served at `/`.
UI := control_plane/ui

# Dependencies come from requirements.lock only (exact versions, every file's hash checked);
# the project itself is then installed without resolving anything, and what the lock does
# not hold (left from an older lock) is uninstalled: the venv is the lock, as on a fresh machine.
$(BIN)/kaizen-studio: pyproject.toml requirements.lock
	@echo "make: installing Kaizen Studio and its dependencies into $(VENV) (first run: a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off --require-hashes -r requirements.lock
	@# xds-protos (Envoy's gRPC API) ships an old copy of opentelemetry-proto's modules at the
	@# same paths; whichever installs last wins. OpenTelemetry's own must (ADR 0013).
	grep -A2 '^opentelemetry-proto==' requirements.lock > $(VENV)/opentelemetry-proto.txt
	$(BIN)/pip install --progress-bar off --require-hashes --no-deps --force-reinstall -r $(VENV)/opentelemetry-proto.txt
	$(BIN)/pip install --progress-bar off --no-deps --no-build-isolation -e .
	scripts/prune-venv.sh $(VENV)
	touch $@

# Re-resolve requirements.lock after a change to pyproject.toml's dependencies.
lock:
	@scripts/lock.sh

up: $(BIN)/kaizen-studio ui
	$(BIN)/kaizen-studio up

ui:
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(UI) && { [ node_modules/.package-lock.json -nt package-lock.json ] || { echo "make: installing the web studio's npm packages (first run)"; npm ci --no-audit --no-fund; }; } \
	  && echo "make: building the web studio" && npm run build; \
	else \
	  echo "Node.js/npm not found: the API runs, but the web studio at / is not built."; \
	  echo "Install Node.js 20 and npm, then run 'make ui'."; \
	fi

ui-test:
	@command -v npm >/dev/null 2>&1 || { echo "make test needs Node.js 20 and npm for the web studio ($(UI))"; exit 1; }
	cd $(UI) && npm ci --no-audit --no-fund && npm test && npm run build

# apt packages (nginx, xmlsec1, chromium) and PostgreSQL/Redis, installed or started when missing.
test-deps:
	@scripts/test-deps.sh

# The suite's PostgreSQL and Redis (also what test_ui.py runs its control plane on).
test: export KAIZEN_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
test: export KAIZEN_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
# Order matters (no -j): the machine first, then the venv, then the studio the tests serve.
test: test-deps $(BIN)/kaizen-studio ui-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

# The API fuzz at nightly size: 1,000 examples per operation and credential (owner key, viewer
# key, gateway credential) and 200 stateful scenarios; `make test` runs the CI size (25 / 15).
fuzz-nightly: export KAIZEN_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
fuzz-nightly: export KAIZEN_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
fuzz-nightly: test-deps $(BIN)/kaizen-studio
	KAIZEN_FUZZ_EXAMPLES=1000 KAIZEN_FUZZ_STATEFUL=200 $(BIN)/pytest -s tests/e2e/test_fuzz_api.py

# A wheel with the built web studio and the Envoy template inside (see tests/e2e/test_wheel.py).
wheel: $(BIN)/kaizen-studio ui
	@test -f $(UI)/dist/index.html || { echo "make wheel needs the built web studio: install Node.js 20 + npm"; exit 1; }
	$(BIN)/python -m pip wheel --no-deps --wheel-dir dist .

# Load generators (wrk, hey) and the services, as for the tests; Cerbos comes from npm on first use.
bench: $(BIN)/kaizen-studio
	@scripts/test-deps.sh --bench
	$(BIN)/python -m tests.bench
