# Two commands: `make dev` (set up, then run the pipeline locally) and `make test` (set up, then test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install dev test bench costs registry lock clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV) pip install --python $(PY) -q --compile-bytecode -r requirements.lock
	$(UV) pip install --python $(PY) -q --no-deps -e .
	@# Byte-compile now: with PYTHONDONTWRITEBYTECODE set, every Dagster run would compile from source.
	$(PY) -m compileall -q -j0 iris_pipeline >/dev/null
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

dev: install
	@scripts/dev.sh

test: install
	@scripts/system-deps.sh
	@scripts/bqemulator/env.sh
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_backlog.py

costs: install
	$(PY) benchmarks/bigquery_costs.py --top 8

registry: install
	$(PY) scripts/generate_registry.py

lock: install
	$(UV) pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .bqemulator-venv data
