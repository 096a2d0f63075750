# onnxpipe. The two front-door commands:
#   make demo   export the example pipelines and run them with the torch-free runtime
#   make test   every test: Python (SDK, ops, runtime, sidecar), Java and Go runtimes on the shared vectors
# Both run `make setup` first (idempotent: .venv/ at the repository root).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY := .venv/bin/python
STAMP := .venv/.onnxpipe-setup
SETUP_DEPS := pyproject.toml runtimes/python/pyproject.toml requirements/constraints.txt requirements/dev.txt

.PHONY: setup demo test test-python test-java test-go vectors generated-models build build-java build-go bench fuzz soak clean

setup: $(STAMP)

$(STAMP): $(SETUP_DEPS)
	@test -x $(PY) || python3 -m venv .venv
	@echo "== setup: installing the SDK, the runtime and the test tools into .venv (first time: a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt \
	    -e 'runtimes/python[text,serve,openvino,score,image,spark]' -e '.[text,vision]' -r requirements/dev.txt
	@touch $(STAMP)

demo: setup
	$(PY) -m examples.demo

# Rewrite every golden vector set (deterministic: git status stays clean when nothing changed).
vectors: setup
	$(PY) tests/vectors/generate.py

# Build only the large models that are not committed (*.generated.onnx), when absent.
generated-models: setup
	$(PY) tests/vectors/generate.py --generated-models

# The Java and Go CLIs are built first: tests/test_spec_cli.py compares the three CLIs byte for byte.
test: REQUIRE_CLIS := 1
test: setup generated-models build test-python test-java test-go

test-python: setup
	ONNXPIPE_REQUIRE_CLIS=$(or $(REQUIRE_CLIS),0) $(PY) -m pytest -q -p no:cacheprovider

test-java: setup
	$(MAKE) -C runtimes/java test
	@if [ -f runtimes/java/sidecar-client/Makefile ]; then $(MAKE) -C runtimes/java/sidecar-client test; fi

test-go: setup
	$(MAKE) -C runtimes/go test
	$(MAKE) -C runtimes/go/sidecar test

build: build-java build-go

build-java: setup
	$(MAKE) -C runtimes/java build
	@if [ -f runtimes/java/sidecar-client/Makefile ]; then $(MAKE) -C runtimes/java/sidecar-client build; fi

build-go: setup
	$(MAKE) -C runtimes/go build native
	$(MAKE) -C runtimes/go/sidecar build

bench: setup generated-models
	$(PY) -m examples.bench
	@if [ -f examples/bench_serve.py ]; then $(PY) -m examples.bench_serve; fi
	$(PY) -m examples.bench_score
	$(PY) -m examples.bench_accel
	$(PY) -m examples.bench_optimize
	$(PY) -m examples.bench_runtimes

# The sidecar under hostile input (about a minute): the malformed-request catalog, random and corrupted bytes,
# valid requests checked, RSS bounded; 0 crashes or it fails. FUZZ_ARGS="--requests 200000" for longer.
FUZZ_ARGS ?=
fuzz: setup
	$(PY) -m examples.fuzz_serve $(FUZZ_ARGS)

# 16 clients against the sidecar for SOAK_SECONDS (default 60): every answer checked, memory flat.
SOAK_SECONDS ?= 60
SOAK_ARGS ?=
soak: setup
	$(PY) -m examples.soak_serve --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

clean:
	rm -rf build .pytest_cache
