# Two entry points that work on a fresh machine with Python 3.11 and make:
#   make run    set up .venv, install aios, run the main job on the embedded defaults
#   make test   set up .venv with the test extras, lint, type-check and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest bench docs clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "aios needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/aios validate --each policies/default.yaml policies/conservative.yaml policies/aggressive.yaml
	$(BIN)/aios run --report state/report.html

lint: $(VENV)/.installed-test
	$(BIN)/ruff check aios plugins tests bench examples
	$(BIN)/ruff format --check aios plugins tests bench examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test: lint typecheck pytest

bench: $(VENV)/.installed-run
	$(BIN)/python bench/run.py
	$(BIN)/python bench/bus.py

docs: $(VENV)/.installed-run
	$(BIN)/aios schema --markdown --output docs/policy-reference.md
	$(BIN)/python -m aios.plugin_docs docs/plugins.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
