# The two commands of the README are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[test]'
	touch $@

## Install and run the exporter against the built-in sFOX simulator on http://localhost:9841/
demo: $(BIN)/.installed
	$(BIN)/sfox-exporter --demo

## Run the whole test suite (the same command CI runs).
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## Lint, type-check and lint the Dockerfile.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

## Run every benchmark and print the table.
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
