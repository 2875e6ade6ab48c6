# The two set-up commands of the README: `make up` runs the product, `make test` the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test lint bench

$(BIN)/kaizen-studio: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(BIN)/kaizen-studio
	$(BIN)/kaizen-studio up

test: $(BIN)/kaizen-studio
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(BIN)/kaizen-studio
	$(BIN)/python -m tests.bench
