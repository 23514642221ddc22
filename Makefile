# Quick start: `make demo` (set up + run the demo catalog), `make test` (set up + all checks).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package pinned to what CI tested (constraints.txt); `make test VENV=.venv-latest CONSTRAINTS=`
# installs the newest releases instead, `make constraints` re-pins from such a fresh install.
CONSTRAINTS ?= constraints.txt
DEMO := examples/demo
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo demo-s3 test lint typecheck pytest dev bench clean constraints

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	@touch $(STAMP)

# Bytecode as an installed package has it: an editable install has none, and where Python writes
# none (PYTHONDONTWRITEBYTECODE) every `coolie`/`dagster` process would compile coolie again
# (~0.1 CPU-s each). Only changed files are compiled; a stale file is ignored by Python.
setup: $(STAMP)
	@$(PY) -m compileall -q -j 0 coolie_core coolie_dagster benchmarks >/dev/null

# dagster.yaml plus the catalog's per-stage run limits (Dagster reads those only from the instance).
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml $(DEMO)/catalog.yaml $(STAMP)
	@mkdir -p $(DAGSTER_HOME)
	$(PY) -m coolie_dagster.instance_config $(DEMO)/catalog.yaml --base dagster.yaml > $@.tmp && mv $@.tmp $@

demo: setup $(DAGSTER_HOME)/dagster.yaml
	$(PY) $(DEMO)/generate.py --out $(DEMO)/data
	$(PY) $(DEMO)/materialize.py $(DEMO)/catalog.yaml

# The same demo catalog with its raw files and lake on S3: a local S3 server (moto), the standard
# AWS variables pointing at it, `coolie run` twice; prints the tables it wrote.
demo-s3: setup
	$(PY) $(DEMO)/s3_demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Both cores: the suite is mostly processes waiting on processes (coolie, dagster, Spark, servers).
PYTEST_WORKERS ?= 2
pytest: setup
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15

test: lint typecheck pytest

dev: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Benchmarks against raw polars + deltalake and bare Dagster (BENCHMARKS.md); ARGS=--quick for a smoke run.
bench: setup
	$(PY) -m benchmarks.run $(ARGS)

# Re-pin: install the newest releases into a throwaway venv and record them.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install --quiet --upgrade pip
	.venv-pin/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .venv-pin/bin/python -m pip freeze --exclude-editable | grep -v '^coolie'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-pin

clean:
	rm -rf $(VENV) .dagster_home $(DEMO)/data .pytest_cache .mypy_cache .ruff_cache .bench
