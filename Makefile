# The two set-up commands of the README: `make up` runs the product, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint bench ui ui-test

# The web studio (control_plane/ui): built into control_plane/ui/dist, served at `/`.
UI := control_plane/ui

$(BIN)/kaizen-studio: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(BIN)/kaizen-studio ui
	$(BIN)/kaizen-studio up

ui:
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(UI) && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build; \
	else \
	  echo "Node.js/npm not found: the API runs, but the web studio at / is not built."; \
	  echo "Install Node.js 20 and npm, then run 'make ui'."; \
	fi

ui-test:
	@command -v npm >/dev/null 2>&1 || { echo "make test needs Node.js 20 and npm for the web studio ($(UI))"; exit 1; }
	cd $(UI) && npm ci --no-audit --no-fund && npm test && npm run build

test: $(BIN)/kaizen-studio ui-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(BIN)/kaizen-studio
	$(BIN)/python -m tests.bench
