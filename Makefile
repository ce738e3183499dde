# streamwatch: the two set-up commands from the README.
#   make run    install into .venv and run the service on config.toml (shipped demo model and clips)
#   make test   install test dependencies (apt + pip) and run lint, type checks and the test suite

VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= config.toml
RUN_ARGS ?=
PYTEST_ARGS ?=
TEST_WORKERS ?= 3

.PHONY: run test install install-test apt-test-deps footage lint

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: on machines with the CPU build on disk this takes it; elsewhere PyPI's build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/streamwatch run -c $(CONFIG) $(RUN_ARGS)

apt-test-deps:
	scripts/install-test-deps.sh

footage:
	scripts/fetch-footage.sh

install-test: apt-test-deps footage $(VENV)/.installed-test

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check streamwatch tests
	$(VENV)/bin/ruff format --check streamwatch tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: install-test lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)
