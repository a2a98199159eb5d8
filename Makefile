# The two commands of the README are `make demo` and `make test`; each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench runtime-venv clean

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

## The exporter installed as the container image installs it: a wheel with its runtime dependencies only.
RUNTIME_VENV := .venv-runtime
$(RUNTIME_VENV)/bin/.installed: pyproject.toml constraints.txt $(shell find exporter -name '*.py')
	rm -rf $(RUNTIME_VENV)
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --constraint constraints.txt .
	touch $@
runtime-venv: $(RUNTIME_VENV)/bin/.installed

## Run every benchmark and print the table; the footprint is that of the exporter as installed.
bench: $(BIN)/.installed $(RUNTIME_VENV)/bin/.installed
	$(BIN)/python -m benchmarks --python $(RUNTIME_VENV)/bin/python

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
