# onnxpipe: `make demo` runs the main job, `make test` runs every test. Both set up what they need.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.onnxpipe-setup
SETUP_DEPS := pyproject.toml runtimes/python/pyproject.toml requirements/constraints.txt requirements/dev.txt

.PHONY: setup demo test test-python test-java test-go vectors bench build clean

setup: $(STAMP)

$(STAMP): $(SETUP_DEPS)
	@test -x $(PY) || python3 -m venv .venv
	@echo "== setup: installing the SDK, the runtime and the test tools into .venv (first time: a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt \
	    -e 'runtimes/python[text,serve]' -e '.[text,vision]' -r requirements/dev.txt
	@touch $(STAMP)

demo: setup
	$(PY) -m examples.demo

vectors: setup
	$(PY) tests/vectors/generate.py --check-or-write

test: setup test-python

test-python: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m examples.bench

clean:
	rm -rf build .pytest_cache
